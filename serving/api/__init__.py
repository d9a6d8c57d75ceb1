"""The HTTP surface of serving: typed dependencies (``deps``) and one router per group of routes (``routes``)."""
