"""EGOML: the learned ego-graph measure for who to follow (see :class:`.model.EgoML`).

Submodules are imported on demand so that ``lightgbm`` loads only with the model.
"""
