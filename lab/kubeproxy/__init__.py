"""The lab's kube-proxy: kube-proxy's rules rendered exactly as kube-proxy writes them, applied to a node.

- `names`: chain/map names as kube-proxy computes them (iptables hashes, nftables readable names);
- `model`: Services and EndpointSlices (API JSON) → service ports and their usable endpoints;
- `iptables`, `nftables`: pure renderers (`render_iptables`, `render_nftables`) of what upstream
  kube-proxy v1.36 writes; nftables mode imitates one of `model.NFT_LAYOUTS` (1.36 by default);
- `apply`: write the rules into a node's network namespace (`sync_iptables`, `sync_nftables`);
- `watch` and `__main__`: the per-node process (`python -m lab.kubeproxy ...`).
"""
