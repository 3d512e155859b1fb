"""The lab on official Kubernetes release binaries (`kubereach lab up --kubernetes DIR`).

The lab keeps building the data plane (nodes, pods, CNI wiring, the pods' servers, DNS data and
NetworkPolicy rules) and plays only kubelet and CNI; the control plane is upstream's own:

- `binaries`: find the release binaries in DIR (one clear message when one is missing), read the version;
- `pki`: the control plane's certificates, keys and service-account signing keys from the lab's CA;
- `kubeconfigs`: one kubeconfig per client identity (admin, controllers, scheduler, kube-proxy, nodes, bot);
- `flags`: the command lines of etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy;
- `objects`: what the lab creates through the API from the spec (Nodes, namespaces, workloads, services,
  policies, the agent DaemonSet, the bot's ServiceAccount bound to the Helm chart's ClusterRole);
- `placement`: which node a pod the lab binds goes to, as the spec's round-robin says;
- `client`: a small HTTPS client (client certificates or tokens) with list and watch;
- `relay`: the API server reached from inside node namespaces over their own loopback;
- `kubelet`: the lab's kubelet and CNI (a process: registers Nodes, binds and builds pods, reports status);
- `control`: bring it all up in order, waiting on readiness, and name what `lab down` must stop.
"""
