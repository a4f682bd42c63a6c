"""A drop-in for the official ``flux0-client`` SDK, on top of flux0lite.

Code written for the SDK runs with its import changed from ``flux0_client`` to
``flux0lite.compat``::

    from flux0lite.compat import Flux0, models
    from flux0lite.compat.utils import BackoffStrategy, RetryConfig

Same constructor, resources, operations, argument names, results (``.data``, the DTO
classes, ``model_dump()``), stream events and errors; flux0lite does the work underneath. For
code you cannot edit, :func:`install_as_flux0_client` makes ``import flux0_client`` itself
resolve here. Where behaviour differs on purpose (safe retries, timeouts on by default, no
pydantic), see "Migrating from flux0-client" in the README.
"""

from flux0lite import __version__ as _flux0lite_version

from . import httpclient, models, types, utils
from .hook import install_as_flux0_client, uninstall_as_flux0_client
from .models import *  # noqa: F403 (the SDK exports every model at the top level too)
from .models import __all__ as _model_names
from .sdk import Flux0, Flux0Client
from .sdkconfiguration import SERVERS, SDKConfiguration

__title__ = "flux0lite.compat"
__version__ = _flux0lite_version
__openapi_doc_version__ = "0.1.0"
__gen_version__ = "flux0lite"
__user_agent__ = f"flux0lite/{_flux0lite_version}"
VERSION = __version__
OPENAPI_DOC_VERSION = __openapi_doc_version__
SPEAKEASY_GENERATOR_VERSION = __gen_version__
USER_AGENT = __user_agent__

__all__ = [
    "Flux0",
    "Flux0Client",
    "SERVERS",
    "SDKConfiguration",
    "install_as_flux0_client",
    "uninstall_as_flux0_client",
    "httpclient",
    "models",
    "types",
    "utils",
    "VERSION",
    "OPENAPI_DOC_VERSION",
    "SPEAKEASY_GENERATOR_VERSION",
    "USER_AGENT",
    *_model_names,
]
