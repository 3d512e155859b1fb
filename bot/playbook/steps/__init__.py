"""The playbook's steps: one module per hop, each a small typed object the engine runs in its order.

A step (`base.SourceStep`, `base.TargetStep`) names its kind, its hop and the observations it needs
(`base.Need`, one per `Observer` call), and holds an async check from observations to recorded step
results with evidence and candidate causes. The engine (`bot.playbook.engine`) holds the order and
the precedence as data; adding a step is one module here and one line in the engine's order.
"""
