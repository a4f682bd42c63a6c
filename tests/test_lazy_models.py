"""The models are frozen dataclasses whose methods are compiled on first need (issue 17)."""

from __future__ import annotations

import copy
import dataclasses
import os
import pickle
import subprocess
import sys
import threading
from pathlib import Path
from typing import List

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _fresh(code: str) -> str:
    """Run ``code`` in a new interpreter (a class's dataclass is made once per process), without
    coverage (which imports dataclasses and inspect itself)."""
    env = dict(os.environ)
    env.pop("COVERAGE_PROCESS_START", None)
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=str(ROOT), capture_output=True, text=True, timeout=60, env=env
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


MADE = "def made(cls):\n    return type(cls.__dict__.get('__dataclass_fields__')) is dict\n"


def test_importing_the_models_compiles_no_dataclass_and_imports_no_dataclasses() -> None:
    made = _fresh(
        "import sys\n"
        "import flux0lite.models as m, flux0lite.jsonmodel as j, flux0lite.streaming\n"
        + MADE
        + "print(sorted(n for n, c in vars(m).items() if isinstance(c, j.LazyDataclassMeta) and made(c)),"
        " 'dataclasses' in sys.modules, 'inspect' in sys.modules)"
    )
    assert made == "[] False False"


def test_reading_models_makes_no_dataclass_until_one_is_needed() -> None:
    """Parsing compiles only the readers: instances exist while their class is pending, and
    ``dataclasses`` is imported only when a dataclass is made (here by ``==``), and then only
    that class's."""
    made = _fresh(
        "import sys\n"
        "from flux0lite.models import Agent, Event, Session\n"
        + MADE
        + "a = Agent.from_dict({'id': 'a', 'name': 'n', 'type': 't', 'new': 1})\n"
        "e = Event.from_dict({'id': 'e', 'type': 'message', 'source': 'user', 'offset': 0,"
        " 'data': {'type': 'message', 'parts': [{'type': 'content', 'content': 'hi'}]}})\n"
        "print(made(Agent), a.id, a.extra, e.data.text, 'dataclasses' in sys.modules)\n"
        "print(a == Agent(id='a', name='n', type='t'), made(Agent), made(Session), made(Event), 'dataclasses' in sys.modules)"
    )
    assert made.splitlines() == ["False a {'new': 1} hi False", "True True False False True"]


@pytest.mark.parametrize(
    "first_use",
    [
        "Agent(id='a', name='n', type='t')",
        "repr(a)",
        "a == a",
        "hash(a)",
        "dataclasses.fields(Agent)",
        "dataclasses.is_dataclass(Agent)",
        "dataclasses.fields(a)",
        "dataclasses.asdict(a)",
        "dataclasses.replace(a, name='m')",
        "copy.deepcopy(a)",
        "pickle.loads(pickle.dumps(a))",
        pytest.param("Agent.__match_args__", marks=pytest.mark.skipif(sys.version_info < (3, 10), reason="3.10+")),
        pytest.param(
            "assert copy.replace(a, name='m').name == 'm'",
            marks=pytest.mark.skipif(sys.version_info < (3, 13), reason="3.13+"),
        ),
        "import inspect; assert list(inspect.signature(Agent).parameters)[:3] == ['id', 'name', 'type']",
        "import inspect; assert str(inspect.signature(type(a))).startswith('(id: ')",
    ],
)
def test_any_first_use_makes_a_complete_frozen_dataclass(first_use: str) -> None:
    out = _fresh(
        "import copy, dataclasses, pickle\n"
        "from flux0lite.models import Agent\n"
        "a = Agent.from_dict({'id': 'a', 'name': 'n', 'type': 't'})\n"
        f"{first_use}\n"
        "assert dataclasses.is_dataclass(Agent) and [f.name for f in dataclasses.fields(Agent)][:3] == ['id', 'name', 'type']\n"
        "assert repr(a) == \"Agent(id='a', name='n', type='t', description=None, created_at=None)\", repr(a)\n"
        "assert a == Agent(id='a', name='n', type='t') and hash(a) == hash(Agent(id='a', name='n', type='t'))\n"
        "try:\n    a.name = 'x'\nexcept dataclasses.FrozenInstanceError:\n    print('frozen')\n"
    )
    assert out == "frozen"


@pytest.mark.skipif(sys.version_info < (3, 10), reason="match: 3.10+")
def test_a_subclass_of_a_model_not_made_yet_matches_by_position() -> None:
    """A pickled instance of a user's subclass, loaded where the model is still pending: ``case``
    asks the subclass for ``__match_args__``, which its base's dataclass gives it."""
    out = _fresh(
        "import pickle, subprocess, sys\n"
        "code = ('from flux0lite.models import Agent\\nclass MyAgent(Agent): pass\\n'\n"
        "        'import pickle, sys\\nsys.stdout.buffer.write(pickle.dumps(MyAgent.from_dict('\n"
        "        '{\\'id\\': \\'a\\', \\'name\\': \\'n\\', \\'type\\': \\'t\\'})))')\n"
        "from flux0lite.models import Agent\n"
        "class MyAgent(Agent): pass\n"
        "import __main__; __main__.MyAgent = MyAgent\n"
        "a = pickle.loads(subprocess.run([sys.executable, '-c', code], capture_output=True).stdout)\n"
        "match a:\n    case MyAgent(i, n):\n        print(i, n)\n"
    )
    assert out == "a n"


def test_assigning_to_an_instance_whose_dataclass_is_not_made_yet_is_refused() -> None:
    out = _fresh(
        "import dataclasses\n"
        "from flux0lite.models import Session\n"
        "s = Session.from_dict({'id': 's', 'agent_id': 'a'})\n"
        "try:\n    del s.id\nexcept dataclasses.FrozenInstanceError:\n    print('frozen', s.id)\n"
    )
    assert out == "frozen s"


def test_threads_using_instances_while_their_dataclass_is_made_all_get_it() -> None:
    """Instances of a pending class exist in many threads at once; each first use waits for the
    one dataclass being made, and every thread sees complete dataclass behaviour."""
    out = _fresh(
        "import dataclasses, threading\n"
        "from flux0lite.models import Agent\n"
        "agents = [Agent.from_dict({'id': str(i), 'name': 'n', 'type': 't'}) for i in range(8)]\n"
        "start, results = threading.Barrier(8), []\n"
        "uses = [lambda a: repr(a), lambda a: a == a, lambda a: hash(a) == hash(Agent(id='2', name='n', type='t')), lambda a: dataclasses.fields(a)[0].name,\n"
        "        lambda a: dataclasses.is_dataclass(a), lambda a: dataclasses.replace(a, name='m').name,\n"
        "        lambda a: dataclasses.asdict(a)['id'], lambda a: Agent(id='x', name='n', type='t').id]\n"
        "def use(i):\n    start.wait()\n    results.append((i, uses[i](agents[i])))\n"
        "threads = [threading.Thread(target=use, args=(i,)) for i in range(8)]\n"
        "[t.start() for t in threads]; [t.join() for t in threads]\n"
        "print(sorted(results))"
    )
    assert out == str(
        [(0, "Agent(id='0', name='n', type='t', description=None, created_at=None)"), (1, True), (2, True),
         (3, "id"), (4, True), (5, "m"), (6, "6"), (7, "x")]
    )  # fmt: skip


def test_hashing_an_instance_while_another_thread_makes_its_dataclass_never_fails() -> None:
    """dataclass() on 3.13 sets __hash__ to None before the real one: meanwhile a hash in another
    thread raised TypeError 'unhashable type' (hadv21 01). Each round a fresh class is pending;
    one thread hashes as soon as the other has begun making it."""
    out = _fresh(
        "import sys, threading\n"
        "sys.setswitchinterval(1e-6)\n"
        "failures = []\n"
        "for _ in range(150):\n"
        "    for name in [m for m in sys.modules if m.startswith('flux0lite')]:\n"
        "        del sys.modules[name]\n"
        "    from flux0lite.models import Agent\n"
        "    a = Agent.from_dict({'id': 'a', 'name': 'n', 'type': 't'})\n"
        "    go, stop = threading.Event(), threading.Event()\n"
        "    def hasher():\n"
        "        go.set()\n"
        "        while not stop.is_set():\n"
        "            if type(Agent.__dict__.get('__dataclass_fields__')) is dict:\n"
        "                try:\n"
        "                    {a: 1}\n"
        "                except TypeError as exc:\n"
        "                    failures.append(repr(exc))\n"
        "                return\n"
        "    t = threading.Thread(target=hasher); t.start(); go.wait()\n"
        "    repr(Agent('x', 'y', 'z')); stop.set(); t.join()\n"
        "print(failures[:1])"
    )
    assert out == "[]"


def test_a_model_that_is_unhashable_stays_unhashable_once_made() -> None:
    """The stand-in that waits for __hash__ while a dataclass is made gives way to None when the
    dataclass is unhashable (eq without frozen), as dataclass() leaves it."""
    out = _fresh(
        "from flux0lite.jsonmodel import STR, JsonModel, field, json_field, model\n"
        "@model()\n"
        "class Loose(JsonModel):\n"
        "    name: str = field(metadata=json_field(STR, required=True))\n"
        "one = Loose.from_dict({'name': 'x'})\n"
        "try:\n    hash(one)\nexcept TypeError as exc:\n    print(Loose.__hash__, exc)\n"
    )
    assert out == "None unhashable type: 'Loose'"


@pytest.mark.parametrize(
    "options", ["frozen=True, eq=False", "", "frozen=False", "frozen=True, init=False", "frozen=True, repr=False"]
)
def test_a_model_behaves_as_its_dataclass_whatever_its_options(options: str) -> None:
    """A method dataclass() leaves alone (no __eq__ with eq=False, no frozen __setattr__
    without frozen=True...) is the plain object's, made lazily or not: the stand-in called
    itself until RecursionError (hadv23 02)."""
    code = (
        "import dataclasses, re\n"
        "from flux0lite.jsonmodel import INT, JsonModel, field, json_field, model\n"
        f"@model({options})\n"
        "class M(JsonModel):\n"
        "    a: int = field(default=1, metadata=json_field(INT))\n"
        f"@dataclasses.dataclass({options})\n"
        "class Plain:\n"
        "    a: int = 1\n"
        "def made(cls):  # as the reader makes one: its __dict__ set, no __init__\n"
        "    if cls is M:\n        return M.from_dict({'a': 2})\n"
        "    one = object.__new__(cls)\n    one.__dict__['a'] = 2\n    return one\n"
        "def behaviour(cls):\n"
        "    one, two = made(cls), made(cls)\n"
        "    seen = [one == two, one == one, type(cls.__hash__).__name__, re.sub(' at 0x[0-9a-f]+', '', repr(one)).replace(cls.__qualname__, 'X')]\n"
        "    try:\n        seen.append(hash(one) == hash(two))\n    except TypeError as exc:\n        seen.append(str(exc).replace(cls.__name__, 'X'))\n"
        "    try:\n        one.a = 3\n        seen.append(one.a)\n    except dataclasses.FrozenInstanceError:\n        seen.append('frozen')\n"
        "    try:\n        seen.append(cls(a=5).a)\n    except TypeError as exc:\n        seen.append(type(exc).__name__)\n"
        "    return seen\n"
        "print(behaviour(M) == behaviour(Plain), behaviour(M), behaviour(Plain))\n"
    )
    out = _fresh(code)
    assert out.startswith("True "), out


def test_threads_making_the_same_dataclass_at_once_all_get_it() -> None:
    out = _fresh(
        "import threading\n"
        "from flux0lite.models import ChunkEvent\n"
        "results = []\n"
        "def use():\n    results.append(ChunkEvent(event_id='e', seq=1, patches=()).seq)\n"
        "threads = [threading.Thread(target=use) for _ in range(8)]\n"
        "[t.start() for t in threads]; [t.join() for t in threads]\n"
        "print(results)"
    )
    assert out == str([1] * 8)


def test_in_this_process_models_behave_as_dataclasses() -> None:
    from flux0lite.models import ChunkEvent, JsonPatch, UnknownPart

    part = UnknownPart(type="x", raw={"type": "x"})
    assert dataclasses.is_dataclass(part) and part.to_dict() == {"type": "x"}
    chunk = ChunkEvent.from_dict({"event_id": "e", "seq": 2, "patches": [{"op": "add", "path": "/-", "value": "hi"}]})
    assert chunk.patches == (JsonPatch(op="add", path="/-", value="hi"),)
    assert copy.copy(chunk) == chunk and pickle.loads(pickle.dumps(chunk)) == chunk
    seen: List[int] = []
    threads = [
        threading.Thread(target=lambda: seen.append(ChunkEvent.from_dict(chunk.to_dict()).seq)) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == [2] * 4


def test_a_made_class_reads_its_fields_as_a_plain_class_does() -> None:
    """No __getattr__ and no class attribute shadowing a field, pending or made (either keeps
    3.11+ from specialising the reads); an unpickled instance of a class not made yet still
    makes it on first use (the pending class's ``__dataclass_fields__`` makes it when read)."""
    from flux0lite.models import Event, JsonPatch

    patch = JsonPatch.from_dict({"op": "add", "path": "/-", "value": "x"})
    for cls in (JsonPatch, Event):
        assert all("__getattr__" not in klass.__dict__ for klass in cls.__mro__)
        names = [f.name for f in dataclasses.fields(cls)]  # makes the dataclass
        assert all("__getattr__" not in klass.__dict__ for klass in cls.__mro__)
        assert not [name for name in names if name in cls.__dict__]
    assert patch.value == "x" and JsonPatch(op="add", path="/-") == JsonPatch.from_dict({"op": "add", "path": "/-"})
    out = _fresh(
        "import pickle, dataclasses\n"
        "from flux0lite.models import ChunkEvent\n"
        "data = pickle.dumps(ChunkEvent(event_id='e', seq=1, patches=()))\n"
        "import subprocess, sys\n"
        "code = 'import pickle, sys, dataclasses; e = pickle.loads(sys.stdin.buffer.read());'"
        " ' print([f.name for f in dataclasses.fields(e)][:2], e.seq, e.timestamp)'\n"
        "print(subprocess.run([sys.executable, '-c', code], input=data, capture_output=True).stdout.decode().strip())"
    )
    assert out == "['event_id', 'seq'] 1 None"
    # and before it is made: no field is a class attribute (the declarations wait elsewhere)
    pending = _fresh(
        "from flux0lite.models import Event\n"
        "e = Event.from_dict({'id': 'e', 'type': 'status', 'source': 'ai_agent', 'offset': 0, 'data': {'status': 'ready'}})\n"
        "print([n for n in Event.__annotations__ if n in Event.__dict__], e.deleted, e.metadata,"
        " type(Event.__dict__['__dataclass_fields__']).__name__)"
    )
    assert pending == "[] False None _MadeOnRead"
