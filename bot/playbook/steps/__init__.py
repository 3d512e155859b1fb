"""The playbook's steps: one module per hop, each a small typed object the engine runs in its order.

A step (`base.Step`) names its kind, its hop and the observations it needs (`observe.Need`, one per
`Observer` call); `asks` says which it wants at this point of the walk (`observe.Ask`), and `decide`
is a pure function from the case, the walk's trail and a read-only view of those observations
(`observe.Seen`) to an `base.Outcome`: step results with evidence, candidate causes, notes, what
could not be checked, whether the walk goes on, and a follow-up step when what to ask next depends
on this result. The engine (`bot.playbook.engine`) asks, decides, folds, and holds the order and the
precedence as data; adding a step is one module here and one line in the engine's order.
"""
