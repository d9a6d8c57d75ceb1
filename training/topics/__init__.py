"""User-intent topics (issue 12): per-user tag documents, a skip-gram text encoder, and an embedded topic model
with a logistic-normal prior whose encoder reads the social + user-item graph (docs/ARCHITECTURE.md §4a)."""
