"""The SDK's ``models`` package, module for module: DTOs, enums, stream events and errors.

Each model is filled from the flux0lite model that parsed the response (see ``from_native``);
enum fields hold the enum member, or the plain string for a value the SDK does not know.
"""

from .agentcreationparamsdto import AgentCreationParamsDTO, AgentCreationParamsDTOTypedDict
from .agentdto import AgentDTO, AgentDTOTypedDict
from .agentsdto import AgentsDTO, AgentsDTOTypedDict
from .apierror import APIError
from .chunkeventdto import ChunkEventDTO, ChunkEventDTOTypedDict
from .chunkeventstream import ChunkEventStream, ChunkEventStreamTypedDict
from .consumptionoffsetsdto import ConsumptionOffsetsDTO, ConsumptionOffsetsDTOTypedDict
from .contentpartdto import ContentPartDTO, ContentPartDTOTypedDict
from .controloptions import ControlOptions, ControlOptionsTypedDict, Mode
from .create_session_eventop import CreateSessionEventRequest, CreateSessionEventRequestTypedDict
from .create_sessionop import CreateSessionRequest, CreateSessionRequestTypedDict
from .emittedeventdto import (
    EmittedEventDTO,
    EmittedEventDTOData,
    EmittedEventDTODataTypedDict,
    EmittedEventDTOTypedDict,
)
from .emittedeventstream import EmittedEventStream, EmittedEventStreamTypedDict
from .eventcreationparamsdto import EventCreationParamsDTO, EventCreationParamsDTOTypedDict
from .eventdto import EventDTO, EventDTOData, EventDTODataTypedDict, EventDTOTypedDict
from .eventsdto import EventsDTO, EventsDTOTypedDict
from .eventsourcedto import EventSourceDTO
from .eventtypedto import EventTypeDTO
from .httpvalidationerror import HTTPValidationError, HTTPValidationErrorData
from .jsonpatchoperationdto import JSONPatchOperationDTO, JSONPatchOperationDTOTypedDict, Op
from .list_session_eventsop import ListSessionEventsRequest, ListSessionEventsRequestTypedDict
from .list_sessionsop import ListSessionsRequest, ListSessionsRequestTypedDict
from .messageeventdatadto import MessageEventDataDTO, MessageEventDataDTOTypedDict, Part, PartTypedDict
from .reasoningpartdto import ReasoningPartDTO, ReasoningPartDTOTypedDict
from .retrieve_agentop import RetrieveAgentRequest, RetrieveAgentRequestTypedDict
from .retrieve_sessionop import RetrieveSessionRequest, RetrieveSessionRequestTypedDict
from .sessioncreationparamsdto import SessionCreationParamsDTO, SessionCreationParamsDTOTypedDict
from .sessiondto import SessionDTO, SessionDTOTypedDict
from .sessionsdto import SessionsDTO, SessionsDTOTypedDict
from .sessionstream import SessionStream, SessionStreamTypedDict
from .statuseventdatadto import StatusEventDataDTO, StatusEventDataDTOTypedDict
from .statuseventdatastatusfield import StatusEventDataStatusField
from .toolcalldto import ToolCallDTO, ToolCallDTOTypedDict
from .tooleventdatadto import ToolEventDataDTO, ToolEventDataDTOTypedDict
from .toolpartdto import ToolPartDTO, ToolPartDTOTypedDict
from .toolresultdto import ToolResultDTO, ToolResultDTOTypedDict
from .validationerror import Loc, LocTypedDict, ValidationError, ValidationErrorTypedDict

__all__ = [
    "APIError",
    "AgentCreationParamsDTO",
    "AgentCreationParamsDTOTypedDict",
    "AgentDTO",
    "AgentDTOTypedDict",
    "AgentsDTO",
    "AgentsDTOTypedDict",
    "ChunkEventDTO",
    "ChunkEventDTOTypedDict",
    "ChunkEventStream",
    "ChunkEventStreamTypedDict",
    "ConsumptionOffsetsDTO",
    "ConsumptionOffsetsDTOTypedDict",
    "ContentPartDTO",
    "ContentPartDTOTypedDict",
    "ControlOptions",
    "ControlOptionsTypedDict",
    "CreateSessionEventRequest",
    "CreateSessionEventRequestTypedDict",
    "CreateSessionRequest",
    "CreateSessionRequestTypedDict",
    "EmittedEventDTO",
    "EmittedEventDTOData",
    "EmittedEventDTODataTypedDict",
    "EmittedEventDTOTypedDict",
    "EmittedEventStream",
    "EmittedEventStreamTypedDict",
    "EventCreationParamsDTO",
    "EventCreationParamsDTOTypedDict",
    "EventDTO",
    "EventDTOData",
    "EventDTODataTypedDict",
    "EventDTOTypedDict",
    "EventSourceDTO",
    "EventTypeDTO",
    "EventsDTO",
    "EventsDTOTypedDict",
    "HTTPValidationError",
    "HTTPValidationErrorData",
    "JSONPatchOperationDTO",
    "JSONPatchOperationDTOTypedDict",
    "ListSessionEventsRequest",
    "ListSessionEventsRequestTypedDict",
    "ListSessionsRequest",
    "ListSessionsRequestTypedDict",
    "Loc",
    "LocTypedDict",
    "MessageEventDataDTO",
    "MessageEventDataDTOTypedDict",
    "Mode",
    "Op",
    "Part",
    "PartTypedDict",
    "ReasoningPartDTO",
    "ReasoningPartDTOTypedDict",
    "RetrieveAgentRequest",
    "RetrieveAgentRequestTypedDict",
    "RetrieveSessionRequest",
    "RetrieveSessionRequestTypedDict",
    "SessionCreationParamsDTO",
    "SessionCreationParamsDTOTypedDict",
    "SessionDTO",
    "SessionDTOTypedDict",
    "SessionStream",
    "SessionStreamTypedDict",
    "SessionsDTO",
    "SessionsDTOTypedDict",
    "StatusEventDataDTO",
    "StatusEventDataDTOTypedDict",
    "StatusEventDataStatusField",
    "ToolCallDTO",
    "ToolCallDTOTypedDict",
    "ToolEventDataDTO",
    "ToolEventDataDTOTypedDict",
    "ToolPartDTO",
    "ToolPartDTOTypedDict",
    "ToolResultDTO",
    "ToolResultDTOTypedDict",
    "ValidationError",
    "ValidationErrorTypedDict",
]
