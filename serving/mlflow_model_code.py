"""MLflow models-from-code entry of every graphrec model: an empty :class:`ScorerModel`, filled from the ``scorer``
artefact by ``load_context``.

MLflow copies this file into each logged model and executes it in ``mlflow.pyfunc.load_model`` (for
``mlflow models serve`` and other MLflow users), so the model is shipped as code and data, never as a pickle.
graphrec never imports this module.
"""

from mlflow.models import set_model

from serving.pyfunc_model import ScorerModel

set_model(ScorerModel())
