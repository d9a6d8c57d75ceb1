"""The Feast repository's definitions, for stock ``feast`` commands run in feature_repo/ (``feast apply``, ``feast
plan``, ``feast feature-views list``...): Feast's repo scanner only finds objects bound to module-level names, so this
module (and only this one) builds them at import, from :func:`graphrec.settings.get_settings` (``GRAPHREC_WORK_DIR``
chooses the offline folder and the published model versions). What is built, and how, is in feature_repo/objects.py;
graphrec's own code calls :func:`feature_repo.objects.build_definitions` and never imports this module.
"""

from feature_repo.model_views import load_manifest
from feature_repo.objects import build_definitions, module_names
from graphrec.settings import get_settings

_settings = get_settings()
globals().update(module_names(build_definitions(_settings.offline_dir, load_manifest(_settings.work_dir))))
