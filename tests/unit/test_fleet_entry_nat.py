"""`FleetObserver.entry_nat` over a real gRPC server on 127.0.0.1: the entry kind goes out as the
request's `Entry`, and the answer's entry fields (policy, drop, health check node port) come back."""

from __future__ import annotations

import asyncio

from grpc import aio

from bot.fleet.client import Fleet
from bot.fleet.observer import FleetObserver
from bot.playbook.observations import NatEndpoint
from bot.settings import AgentSettings
from kubereach.agent.v1 import agent_pb2 as pb
from kubereach.agent.v1 import agent_pb2_grpc as pb_grpc


class NatAgent(pb_grpc.NodeAgentServiceServicer):
    """Answers GetServiceNat as a node without a local endpoint would, and keeps the requests."""

    def __init__(self) -> None:
        self.requests: list[pb.GetServiceNatRequest] = []

    async def GetServiceNat(self, request: pb.GetServiceNatRequest, context: object) -> pb.GetServiceNatResponse:
        self.requests.append(request)
        service = pb.ServiceNat(
            mode="iptables",
            vip=request.vip,
            port=request.port,
            protocol="TCP",
            programmed=True,
            no_endpoints_action="DROP" if request.entry else "",
            rules=["-A KUBE-NODEPORTS …"],
            entry={pb.ENTRY_NODE_PORT: "nodeport", pb.ENTRY_LOAD_BALANCER: "load-balancer"}.get(request.entry, ""),
            external_policy="Local" if request.entry else "",
            health_check_node_port=31234 if request.entry else 0,
        )
        if not request.entry:
            service.endpoints.add(ip="10.244.1.3", port=8080)
        return pb.GetServiceNatResponse(service=service)


def test_entry_nat_asks_with_the_entry_and_reads_its_fields() -> None:
    async def scenario() -> None:
        server = aio.server()
        agent = NatAgent()
        pb_grpc.add_NodeAgentServiceServicer_to_server(agent, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            fleet = Fleet({"node-2": f"127.0.0.1:{port}"}, AgentSettings(discovery="static", insecure=True))
            observer = FleetObserver(fleet)
            entry = await observer.entry_nat("node-2", "nodeport", "10.240.0.12", 30080, "TCP")
            lb = await observer.entry_nat("node-2", "load-balancer", "198.51.100.10", 80, "TCP")
            vip = await observer.service_nat("node-2", "10.96.0.5", 80, "TCP")
            await fleet.close()
        finally:
            await server.stop(None)
        assert [r.entry for r in agent.requests] == [pb.ENTRY_NODE_PORT, pb.ENTRY_LOAD_BALANCER, pb.ENTRY_UNSPECIFIED]
        assert agent.requests[0].vip == "10.240.0.12" and agent.requests[0].port == 30080
        assert entry.value is not None and lb.value is not None and vip.value is not None
        assert (entry.value.entry, entry.value.external_policy, entry.value.no_endpoints_action) == ("nodeport", "Local", "DROP")
        assert entry.value.health_check_node_port == 31234 and entry.value.endpoints == ()
        assert lb.value.entry == "load-balancer"
        assert (vip.value.entry, vip.value.endpoints) == ("", (NatEndpoint("10.244.1.3", 8080, None),))

    asyncio.run(scenario())
