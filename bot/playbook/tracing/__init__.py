"""The path trace, pure: the probe points of a path in packet order (`points`), and what the
captures on them say (`judge`): where packets stop, NAT seen on the wire, a reply on the wrong path,
and intermittent loss."""
