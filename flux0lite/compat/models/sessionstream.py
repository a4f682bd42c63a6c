from __future__ import annotations

from typing import Union

from .chunkeventstream import ChunkEventStream, ChunkEventStreamTypedDict
from .emittedeventstream import EmittedEventStream, EmittedEventStreamTypedDict

SessionStream = Union[ChunkEventStream, EmittedEventStream]
SessionStreamTypedDict = Union[ChunkEventStreamTypedDict, EmittedEventStreamTypedDict]
