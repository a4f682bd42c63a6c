"""Every public name of the SDK (per the shared INVENTORY.md) that flux0lite.compat provides,
at the module path SDK code imports it from; and the ``flux0_client`` import hook."""

from __future__ import annotations

import importlib
import inspect
import sys
from typing import Dict, List

import pytest

import flux0lite
import flux0lite.compat as flux0_client
from flux0lite.compat import install_as_flux0_client, uninstall_as_flux0_client

TOP_LEVEL = [
    "Flux0",
    "Flux0Client",
    "SERVERS",
    "SDKConfiguration",
    "models",
    "utils",
    "httpclient",
    "types",
    "VERSION",
    "OPENAPI_DOC_VERSION",
    "SPEAKEASY_GENERATOR_VERSION",
    "USER_AGENT",
    "__title__",
    "__version__",
    "__gen_version__",
    "__openapi_doc_version__",
    "__user_agent__",
]

# models/<module>.py -> the names it defines, as the SDK lays them out
MODEL_MODULES: Dict[str, List[str]] = {
    "agentcreationparamsdto": ["AgentCreationParamsDTO", "AgentCreationParamsDTOTypedDict"],
    "agentdto": ["AgentDTO", "AgentDTOTypedDict"],
    "agentsdto": ["AgentsDTO", "AgentsDTOTypedDict"],
    "apierror": ["APIError"],
    "chunkeventdto": ["ChunkEventDTO", "ChunkEventDTOTypedDict"],
    "chunkeventstream": ["ChunkEventStream", "ChunkEventStreamTypedDict"],
    "consumptionoffsetsdto": ["ConsumptionOffsetsDTO", "ConsumptionOffsetsDTOTypedDict"],
    "contentpartdto": ["ContentPartDTO", "ContentPartDTOTypedDict"],
    "controloptions": ["ControlOptions", "ControlOptionsTypedDict", "Mode"],
    "create_session_eventop": ["CreateSessionEventRequest", "CreateSessionEventRequestTypedDict"],
    "create_sessionop": ["CreateSessionRequest", "CreateSessionRequestTypedDict"],
    "emittedeventdto": [
        "EmittedEventDTO",
        "EmittedEventDTOData",
        "EmittedEventDTODataTypedDict",
        "EmittedEventDTOTypedDict",
    ],
    "emittedeventstream": ["EmittedEventStream", "EmittedEventStreamTypedDict"],
    "eventcreationparamsdto": ["EventCreationParamsDTO", "EventCreationParamsDTOTypedDict"],
    "eventdto": ["EventDTO", "EventDTOData", "EventDTODataTypedDict", "EventDTOTypedDict"],
    "eventsdto": ["EventsDTO", "EventsDTOTypedDict"],
    "eventsourcedto": ["EventSourceDTO"],
    "eventtypedto": ["EventTypeDTO"],
    "httpvalidationerror": ["HTTPValidationError", "HTTPValidationErrorData"],
    "jsonpatchoperationdto": ["JSONPatchOperationDTO", "JSONPatchOperationDTOTypedDict", "Op"],
    "list_session_eventsop": ["ListSessionEventsRequest", "ListSessionEventsRequestTypedDict"],
    "list_sessionsop": ["ListSessionsRequest", "ListSessionsRequestTypedDict"],
    "messageeventdatadto": ["MessageEventDataDTO", "MessageEventDataDTOTypedDict", "Part", "PartTypedDict"],
    "reasoningpartdto": ["ReasoningPartDTO", "ReasoningPartDTOTypedDict"],
    "retrieve_agentop": ["RetrieveAgentRequest", "RetrieveAgentRequestTypedDict"],
    "retrieve_sessionop": ["RetrieveSessionRequest", "RetrieveSessionRequestTypedDict"],
    "sessioncreationparamsdto": ["SessionCreationParamsDTO", "SessionCreationParamsDTOTypedDict"],
    "sessiondto": ["SessionDTO", "SessionDTOTypedDict"],
    "sessionsdto": ["SessionsDTO", "SessionsDTOTypedDict"],
    "sessionstream": ["SessionStream", "SessionStreamTypedDict"],
    "statuseventdatadto": ["StatusEventDataDTO", "StatusEventDataDTOTypedDict"],
    "statuseventdatastatusfield": ["StatusEventDataStatusField"],
    "toolcalldto": ["ToolCallDTO", "ToolCallDTOTypedDict"],
    "tooleventdatadto": ["ToolEventDataDTO", "ToolEventDataDTOTypedDict"],
    "toolpartdto": ["ToolPartDTO", "ToolPartDTOTypedDict"],
    "toolresultdto": ["ToolResultDTO", "ToolResultDTOTypedDict"],
    "validationerror": ["Loc", "LocTypedDict", "ValidationError", "ValidationErrorTypedDict"],
}

OTHER_MODULES: Dict[str, List[str]] = {
    "utils": [
        "BackoffStrategy",
        "RetryConfig",
        "Retries",
        "EventStream",
        "EventStreamAsync",
        "eventstreaming",
        "Logger",
        "get_default_logger",
        "template_url",
    ],
    "utils.eventstreaming": ["EventStream", "EventStreamAsync"],
    "httpclient": ["HttpClient", "AsyncHttpClient"],
    "types": ["BaseModel", "UNSET", "Unset", "OptionalNullable", "Nullable", "UNSET_SENTINEL"],
    "sdk": ["Flux0", "Flux0Client"],
    "sdkconfiguration": ["SDKConfiguration", "SERVERS"],
    "agents": ["Agents"],
    "sessions": ["Sessions"],
    "basesdk": ["BaseSDK"],
}

# SDK internals no documented example uses; not provided (the README says so).
NOT_PROVIDED_UTILS = [
    "retry",
    "retry_async",
    "generate_url",
    "get_query_params",
    "get_headers",
    "serialize_request_body",
    "marshal_json",
    "unmarshal_json",
    "unmarshal",
    "stream_to_text",
    "stream_to_bytes",
    "validate_const",
    "validate_open_enum",
    "get_discriminator",
    "OpenEnumMeta",
    "get_body_content",
    "match_status_codes",
    "match_response",
    "match_content_type",
    "get_global_from_env",
    "cast_partial",
]

COMMON = ["retries", "server_url", "timeout_ms", "http_headers"]
OPERATIONS: Dict[str, Dict[str, List[str]]] = {
    "agents": {"list": [], "create": ["name", "type_", "description"], "retrieve": ["agent_id"]},
    "sessions": {
        "create": ["agent_id", "allow_greeting", "id", "title"],
        "list": ["agent_id"],
        "retrieve": ["session_id"],
        "create_event": ["session_id", "type_", "source", "content"],
        "list_events": ["session_id", "min_offset", "source", "correlation_id", "types"],
    },
}


def test_top_level_names() -> None:
    for name in TOP_LEVEL:
        assert hasattr(flux0_client, name), name
    assert flux0_client.SERVERS == ["http://127.0.0.1:8080"]
    assert flux0_client.Flux0Client is flux0_client.Flux0


def test_every_model_at_its_sdk_module_path_and_at_the_top() -> None:
    all_names = sorted(n for names in MODEL_MODULES.values() for n in names)
    assert len(all_names) == 80
    assert sorted(flux0_client.models.__all__) == all_names
    for module_name, names in MODEL_MODULES.items():
        module = importlib.import_module(f"flux0lite.compat.models.{module_name}")
        for name in names:
            value = getattr(module, name)
            assert getattr(flux0_client.models, name) is value
            assert getattr(flux0_client, name) is value  # the SDK re-exports models at the top


@pytest.mark.parametrize("module_name", sorted(OTHER_MODULES))
def test_other_modules(module_name: str) -> None:
    module = importlib.import_module(f"flux0lite.compat.{module_name}")
    for name in OTHER_MODULES[module_name]:
        assert hasattr(module, name), f"{module_name}.{name}"


def test_unprovided_utils_are_really_absent() -> None:
    for name in NOT_PROVIDED_UTILS:
        assert not hasattr(flux0_client.utils, name), name


@pytest.mark.parametrize("resource", sorted(OPERATIONS))
def test_operations_take_the_sdk_parameter_names(resource: str) -> None:
    sdk = flux0_client.Flux0(server_url="http://127.0.0.1:9")
    group = getattr(sdk, resource)
    for operation, params in OPERATIONS[resource].items():
        for name in (operation, operation + "_async"):
            method = getattr(group, name)
            signature = inspect.signature(method)
            assert list(signature.parameters) == params + COMMON or sorted(signature.parameters) == sorted(
                params + COMMON
            ), (name, list(signature.parameters))
            assert inspect.iscoroutinefunction(method) == name.endswith("_async")
    sdk.close()


def test_constructor_takes_the_sdk_keywords() -> None:
    names = list(inspect.signature(flux0_client.Flux0).parameters)
    assert names == [
        "server_idx",
        "server_url",
        "url_params",
        "client",
        "async_client",
        "retry_config",
        "timeout_ms",
        "debug_logger",
    ]


def test_enums_are_str_enums() -> None:
    models = flux0_client.models
    assert models.EventTypeDTO.MESSAGE == "message" and isinstance(models.EventTypeDTO.TOOL, str)
    assert [m.value for m in models.EventSourceDTO] == ["user", "ai_agent", "system"]
    assert models.StatusEventDataStatusField("acknowledged") is models.StatusEventDataStatusField.ACKNOWLEDGED
    assert {m.value for m in models.Op} == {"add", "replace"} and models.Mode.AUTO == "auto"
    assert models.ChunkEventStream.EVENT == "chunk" and models.EmittedEventStream.EVENT == "status"


def test_errors_are_in_flux0lites_tree() -> None:
    models = flux0_client.models
    assert issubclass(models.APIError, flux0lite.APIError)
    assert issubclass(models.HTTPValidationError, flux0lite.ValidationError)
    assert issubclass(flux0_client.sdkconfiguration.ServerIndexError, IndexError)


# -- the import hook -------------------------------------------------------------------------


@pytest.fixture
def hooked() -> object:
    install_as_flux0_client()
    yield
    uninstall_as_flux0_client()


def test_hook_resolves_flux0_client_and_its_submodules(hooked: object) -> None:
    import flux0_client as aliased  # type: ignore[import-not-found]
    from flux0_client.models.chunkeventstream import ChunkEventStream  # type: ignore[import-not-found]
    from flux0_client.models.emittedeventstream import EmittedEventStream  # type: ignore[import-not-found]
    from flux0_client.utils import BackoffStrategy, RetryConfig  # type: ignore[import-not-found]

    assert aliased is flux0_client
    assert ChunkEventStream is flux0_client.models.ChunkEventStream
    assert EmittedEventStream is flux0_client.models.EmittedEventStream
    assert RetryConfig is flux0_client.utils.RetryConfig and BackoffStrategy is flux0_client.utils.BackoffStrategy
    assert importlib.import_module("flux0_client.models.apierror").APIError is flux0_client.models.APIError
    # the shared module keeps its own identity
    assert flux0_client.__spec__ is not None and flux0_client.__spec__.name == "flux0lite.compat"
    assert flux0_client.models.__spec__ is not None and flux0_client.models.__spec__.name == "flux0lite.compat.models"
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("flux0_client.no_such_module")


def test_hook_is_opt_in_and_leaves_no_file(hooked: object) -> None:
    install_as_flux0_client()  # a second call is harmless
    uninstall_as_flux0_client()
    assert "flux0_client" not in sys.modules
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("flux0_client")
    for entry in sys.path:
        assert not entry.endswith("flux0_client")
    install_as_flux0_client()


def test_hook_refuses_to_mix_with_a_real_flux0_client(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    monkeypatch.setitem(sys.modules, "flux0_client", types.ModuleType("flux0_client"))
    with pytest.raises(flux0lite.ConfigError, match="already imported"):
        install_as_flux0_client()
