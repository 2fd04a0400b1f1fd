"""Response actions. :mod:`.base` is the contract every action implements (first- and
third-party alike: contribute them through the ``falconet_response_actions`` hook)."""
