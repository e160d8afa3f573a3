"""The harness's test driver: runs inside the verification interpreter, given with `-c` (never a
file the tested code could edit first), standard library only, never imports cto_harness.

    python [options] -c <this source> MODE OUT_FD TOKEN_FD FRAMEWORK [runner arguments...]

MODE is `run` or `collect`; FRAMEWORK `unittest` or `pytest`. The per-run token is read from
TOKEN_FD (a pipe the harness filled and closed) and the descriptor closed, so the token is in no
argument, environment variable or file. Every record is one JSON line on OUT_FD carrying the
token: `start`, then one `test` (run) or `collected` (collect) record per test, `collect_error`
for a module that did not import, and `end` once the framework returned on its own. A process
that exits early never writes `end`; text it prints is never read as a result.

Before any test module is imported, the driver turns byte-code writing off and makes every
module under the tested tree load from source only (no `.pyc` there, cached or alone, runs
instead of the source the diff shows); and it records the identity of the framework's own
functions, so a tested module that replaces them is named in `end` (`tampered`).
"""

from __future__ import annotations

import json
import os
import sys


def _channel(out_fd: int, token: str):  # type: ignore[no-untyped-def]
    write, dumps, getpid = os.write, json.dumps, os.getpid
    counter = [0]

    def emit(kind: str, **fields: object) -> None:
        counter[0] += 1
        line = dumps({"token": token, "seq": counter[0], "type": kind, "pid": getpid(),
                      **fields}) + "\n"
        view = memoryview(line.encode("utf-8", "backslashreplace"))
        while view:
            view = view[write(out_fd, view):]

    return emit


def _source_only(root: str) -> None:
    """Modules under `root` (the tree being tested) load from their source only: a `.pyc` there,
    in `__pycache__` or alone, is never used, so what runs is what the diff shows. The standard
    library keeps its own byte-code (no cost)."""
    import importlib.machinery as machinery

    class SourceOnly(machinery.SourceFileLoader):
        def get_data(self, path: str) -> bytes:
            if path.endswith(tuple(machinery.BYTECODE_SUFFIXES)):
                raise OSError("cto-harness: byte-code in the tested tree is never used")
            return super().get_data(path)

    inside = os.path.realpath(root)
    source_finder = machinery.FileFinder.path_hook(
        (SourceOnly, machinery.SOURCE_SUFFIXES))

    def hook(path: str):  # type: ignore[no-untyped-def]
        real = os.path.realpath(path or os.curdir)
        if real == inside or real.startswith(inside + os.sep):
            return source_finder(path)
        raise ImportError("not in the tested tree")

    sys.path_hooks.insert(0, hook)
    sys.path_importer_cache.clear()


def _guard(owners: dict[str, object]) -> dict[tuple[str, str], int]:
    found = {}
    for owner_name, owner in owners.items():
        for attr, value in list(vars(owner).items()):
            if callable(value) or isinstance(value, (staticmethod, classmethod, property)):
                found[(owner_name, attr)] = id(value)
    return found


def _tampered(before: dict[tuple[str, str], int], owners: dict[str, object]) -> list[str]:
    """Functions replaced, and functions added: a `TestCase.__getattribute__` the framework
    never had answers for every assertion without replacing one."""
    after = _guard(owners)
    return sorted(f"{o}.{a}" for (o, a) in {*before, *after}
                  if after.get((o, a)) != before.get((o, a)))


class _Judge:
    """What an assertion is about to compare, checked first: the tested code can return an
    object that equals anything (a `str` subclass whose `__eq__` is `str.__ne__`, an object
    whose `__eq__` returns True), and compared with the test's expected value its own method
    answers. Where two compared values are of different types (the standard library's numbers
    apart), each type's `__eq__` and `__ne__` must be the interpreter's own (builtins,
    `collections`, `decimal`; see `_counter`), and so inside lists, tuples, dicts (keys too),
    sets and the fields of two objects of one type (`__dict__` and slots); a truth test's
    `__bool__` and `__len__` too.

    Types and class dicts are read with what the driver holds from before any tested module
    was imported, so a replaced `type`, a `__class__` property, a metaclass's `__mro__` or a
    class claiming `__module__ = "builtins"` changes nothing. Code that patches the fixture's
    own classes or reads its caller's frame is not caught (docs/security.md: in-process).

    The price: an object of the test's own whose equality is written in Python (a matcher,
    `unittest.mock.ANY`) compared with a value of another type fails the test as well. Which
    code made a class cannot be told from inside the process; the message names the method."""

    def __init__(self, approx: tuple[type, ...] = ()) -> None:
        import collections
        import decimal
        import types

        # Every builtin used below is held here, before any tested module is imported: one that
        # replaced `builtins.dict` (by a class no type is a subclass of) or `builtins.zip` would
        # hide what a comparison holds.
        self.kind, self.dict, self.list, self.tuple = type, dict, list, tuple
        self.sets, self.zip, self.any = (set, frozenset), zip, any
        self.mro = type.__dict__["__mro__"].__get__
        self.class_dict = type.__dict__["__dict__"].__get__
        self.instance_attr = object.__getattribute__
        self.subclass, self.items = issubclass, dict.items
        self.list_iter, self.tuple_iter = list.__iter__, tuple.__iter__
        self.set_iter, self.frozenset_iter = set.__iter__, frozenset.__iter__
        self.slot_kind = types.MemberDescriptorType
        self.slot_get = types.MemberDescriptorType.__get__
        # Held by identity (`id`): a set's `in` would hash a class and compare it with `==`,
        # both answered by its metaclass, which the tested code writes.
        self.id = id
        # Equality written in C only: `Fraction.__eq__` is Python, which reads its fields (any
        # object), the other value's attributes and its module's globals, all the tested code's
        # to set (`fractions.NotImplemented = True` made a Fraction equal to any str). A
        # Fraction is judged like the fixture's classes: by its fields, against its own kind.
        self.trusted = frozenset(map(id, {
            object, int, float, complex, bool, str, bytes, bytearray, list, tuple, dict, set,
            frozenset, type(None), range, decimal.Decimal, collections.OrderedDict,
            collections.defaultdict, collections.Counter, collections.deque}))
        self.numbers = frozenset(map(id, {int, float, complex, bool, decimal.Decimal}))
        # pytest's approx classes (`_approx`): Python whose every field the maker chose.
        self.approx = frozenset(map(id, approx))
        self.arithmetic = ("__eq__", "__ne__", "__sub__", "__rsub__", "__abs__")
        # `Counter.__eq__` is Python too, kept for a solution that returns a Counter where a
        # dict is expected: it answers for the interpreter only for an exact Counter (a
        # subclass overrides what it reads) facing a dict of the interpreter's own (it reads
        # the other's `__class__` and items), while its class, and the globals and builtins
        # its methods look up (`collections.NotImplemented`), are as they were here.
        counter = collections.Counter
        self.counter, self.counter_dict = counter, dict(self.class_dict(counter))
        self.counter_faces = frozenset(map(id, {
            dict, collections.OrderedDict, collections.defaultdict, counter}))
        self.get, self.missing = dict.get, object()
        self.counter_reads = [
            (scope, name, self.get(scope, name, self.missing))
            for method in (self.counter_dict["__eq__"], self.counter_dict["__ne__"])
            for scope in (method.__globals__, method.__builtins__)
            for name in method.__code__.co_names]
        self.containers = frozenset(map(id, {list, tuple, set, frozenset, dict}))
        self.budget = 0

    def foreign(self, cls: type, names: tuple[str, ...] = ("__eq__", "__ne__")) -> str | None:
        """`Class.method` when the class that defines one of `names` for `cls` is not trusted."""
        for name in names:
            for klass in self.mro(cls):
                if name in self.class_dict(klass):
                    if self.id(klass) not in self.trusted:
                        return f"{klass.__name__!s:.80}.{name}"
                    break
        return None

    def _counter(self, cls: type, other: type) -> str | None:
        """Why a Counter's own equality would not answer for the interpreter, or None."""
        if not self.subclass(cls, self.counter):
            return None
        if cls is not self.counter:
            return f"{cls.__name__!s:.80} is a Counter subclass (Counter's equality is Python)"
        if self.id(other) not in self.counter_faces:
            return (f"a Counter was compared with a {other.__name__!s:.80} (Counter's "
                    "equality is Python: it reads the other value)")
        live, was = self.dict(self.class_dict(cls)), self.counter_dict
        for name in [*live, *was]:
            if self.get(live, name, self.missing) is not self.get(was, name, self.missing):
                return f"Counter.{name!s:.80} was changed during the run"
        for scope, name, value in self.counter_reads:
            if self.get(scope, name, self.missing) is not value:
                return f"{name!s:.80}, which Counter's equality looks up, was replaced"
        return None

    def _inside(self, a, b):  # type: ignore[no-untyped-def]
        """The pairs to compare inside `a` and `b`, read with the base classes' own methods."""
        ta, tb = self.kind(a), self.kind(b)
        seq = (self.list, self.tuple)
        if self.subclass(ta, seq) and self.subclass(tb, seq):
            left = [*(self.list_iter(a) if self.subclass(ta, self.list) else self.tuple_iter(a))]
            right = [*(self.list_iter(b) if self.subclass(tb, self.list) else self.tuple_iter(b))]
            return [*self.zip(left, right)]  # unequal lengths: the framework says
        if self.subclass(ta, self.dict) and self.subclass(tb, self.dict):
            # Looked up as `==` does; a key whose own `__eq__` would answer was `_unmatched`.
            right_items = self.dict(self.items(b))
            return [(v, right_items[k]) for k, v in self.items(a) if k in right_items]
        if ta is tb and self.id(ta) not in self.trusted:
            # Two objects of one type: their fields, wherever attribute lookup finds them (a
            # `__dict__` may be a dict subclass; slots hold fields outside it).
            pairs = []
            try:
                left_d, right_d = self.instance_attr(a, "__dict__"), self.instance_attr(b, "__dict__")
                if (self.subclass(self.kind(left_d), self.dict)
                        and self.subclass(self.kind(right_d), self.dict)):
                    pairs.append((left_d, right_d))  # judged as two dicts: keys and values
            except AttributeError:
                pass
            for klass in self.mro(ta):
                for slot in self.class_dict(klass).values():
                    if self.kind(slot) is self.slot_kind:
                        try:  # syntax, not contextlib: nothing the tested code can patch
                            pairs.append((self.slot_get(slot, a), self.slot_get(slot, b)))
                        except (AttributeError, TypeError):  # an unset slot: no field
                            continue
            return pairs
        return []

    def _keys(self, x: object) -> list[object] | None:
        """A dict's keys or a set's members (read with the base class's own methods), or None."""
        kind = self.kind(x)
        if self.subclass(kind, self.dict):
            return [k for k, _ in self.items(x)]  # type: ignore[arg-type,var-annotated]
        if self.subclass(kind, self.sets):
            return [*(self.set_iter(x) if self.subclass(kind, self.sets[0])  # type: ignore[arg-type]
                      else self.frozenset_iter(x))]  # type: ignore[arg-type]
        return None

    def _unmatched(self, a: object, b: object) -> str | None:
        """A key of `a` is found in `b` by its own `__eq__` (dicts, sets): one whose type's
        equality is not the interpreter's own, where `b` has no key of that very type."""
        left, right = self._keys(a), self._keys(b)
        if left is None or right is None:
            return None
        kinds = {self.id(self.kind(y)) for y in right}
        for key in left:
            cls = self.kind(key)
            if self.id(cls) not in kinds and (why := self.foreign(cls)):
                return (f"a {cls.__name__!s:.80} was looked up among the keys of a "
                        f"{self.kind(b).__name__!s:.80}, and {why} is not the interpreter's own: "
                        "a key equal to anything would be found")
        return None

    def compared(self, a: object, b: object) -> str | None:
        """Why comparing `a` with `b` would be the tested code's answer, or None."""
        self.budget = 0
        return self._check(a, b, 0)

    def _approx(self, a: object, b: object, depth: int, right: bool) -> str | None:
        """`a == approx` (`right`) or `approx == b`: pytest's approx compares what it holds
        with the other value, by `==`, then by the difference (`abs(expected - actual)`), and
        reads that value's keys, items and length: all judged, as the parts they are. A value
        of the tested code's own can be an approx too, and `approx(0, abs=math.inf)` equals
        every number: one with a tolerance of its own counts only on the right of `==`, where
        pytest's convention puts the test's expected value."""
        fields = self.instance_attr(b if right else a, "__dict__")
        if not right and (self.get(fields, "abs") is not None
                          or self.get(fields, "rel") is not None):
            return ("a pytest.approx with a tolerance of its own was on the left of ==, where "
                    "the value under test stands: one equal to every number would pass")
        expected, actual = self.get(fields, "expected"), a if right else b
        read = (*self.arithmetic, "keys", "__getitem__", "__iter__", "__len__")
        if why := self.foreign(self.kind(actual), read):
            return (f"a {self.kind(actual).__name__!s:.80} was compared with a pytest.approx, "
                    f"and {why} is not the interpreter's own")
        if right:
            return self._check(actual, expected, depth + 1, self.arithmetic)
        return self._check(expected, actual, depth + 1, self.arithmetic)

    def _check(self, a: object, b: object, depth: int,
               names: tuple[str, ...] = ("__eq__", "__ne__")) -> str | None:
        self.budget += 1
        if a is b or depth > 32 or self.budget > 10_000:
            return None
        ta, tb = self.kind(a), self.kind(b)
        if self.id(tb) in self.approx or self.id(ta) in self.approx:
            return self._approx(a, b, depth, right=self.id(tb) in self.approx)
        for cls, other in ((ta, tb), (tb, ta)):
            if why := self._counter(cls, other):
                return f"{why}, so it is not the interpreter's own"
        if ta is not tb and not (self.id(ta) in self.numbers and self.id(tb) in self.numbers):
            for cls, other in ((ta, tb), (tb, ta)):
                if why := self.foreign(cls, names):
                    return (f"a {cls.__name__!s:.80} was compared with a "
                            f"{other.__name__!s:.80}, and {why} is not the interpreter's own: "
                            "an object equal to anything would pass")
        if why := self._unmatched(a, b) or self._unmatched(b, a):
            return why
        for x, y in self._inside(a, b):  # type: ignore[no-untyped-call]
            if why := self._check(x, y, depth + 1, names):
                return why
        return None

    def truth(self, value: object) -> str | None:
        if why := self.foreign(self.kind(value), ("__bool__", "__len__")):
            return (f"the truth of a {self.kind(value).__name__!s:.80} comes from {why}, "
                    "not the interpreter's own")
        return None

    def member(self, member: object, container: object) -> str | None:
        """`member in container` for a builtin container: each element is compared with the
        member by the element's own `__eq__` first, then the member's. Either, where the two
        types differ, must be the interpreter's own."""
        if self.id(self.kind(container)) not in self.containers:
            return None
        cls = self.kind(member)
        elements = self._keys(container)
        if elements is None:  # a list or tuple (exactly: read with their own iterators)
            elements = [*(self.list_iter(container)  # type: ignore[arg-type]
                          if self.kind(container) is self.list
                          else self.tuple_iter(container))]  # type: ignore[arg-type]
        if self.foreign(cls) and not self.any(self.kind(i) is cls for i in elements):
            return (f"a {cls.__name__!s:.80} was looked up in a "
                    f"{self.kind(container).__name__}, and {self.foreign(cls)} is not "
                    "the interpreter's own")
        for element in elements:
            if self.kind(element) is not cls and (why := self.foreign(self.kind(element))):
                return (f"a {self.kind(container).__name__} holding a "
                        f"{self.kind(element).__name__!s:.80} was searched, and {why} is not the "
                        "interpreter's own: an element equal to "
                        "anything would be found")
        return None

    def sequences(self, a: object, b: object) -> str | None:
        """`assertSequenceEqual`: where `==` says no, it compares the items it gets with `len`
        and `[i]`, and two sequences of different types with equal items pass: those methods
        are judged too (a list subclass whose `__getitem__` returns an object equal to
        anything passed as any list of its length)."""
        if why := self.compared(a, b):
            return why
        for value in (a, b):
            if why := self.foreign(self.kind(value), ("__len__", "__getitem__")):
                return (f"the items of a {self.kind(value).__name__!s:.80} come from {why}, "
                        "not the interpreter's own")
        return None

    def almost(self, a: object, b: object) -> str | None:
        """`assertAlmostEqual`: compared as by `==`, then by the difference's arithmetic."""
        if why := self.compared(a, b):
            return why
        ta, tb = self.kind(a), self.kind(b)
        if ta is not tb:
            for cls in (ta, tb):
                if why := self.foreign(cls, ("__sub__", "__rsub__", "__abs__", "__round__")):
                    return (f"the difference of a {ta.__name__!s:.80} and a "
                            f"{tb.__name__!s:.80} comes from {why}, not the interpreter's own")
        return None


def _strict_asserts(case, judge):  # type: ignore[no-untyped-def]
    """TestCase's equality, truth and membership assertions, each judged first (`_Judge`): an
    answer the tested code would give fails the test, named. (`assertCountEqual` pairs values
    in any order and is left as it is; so are the negative assertions, where values of
    different types are the usual case.)"""

    def wrap(method, why_not, values, count=len):  # type: ignore[no-untyped-def]
        def assertion(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            if count(args) >= values and (why := why_not(*args[:values])):
                raise self.failureException(f"cto-harness: {why}")
            return method(self, *args, **kwargs)

        assertion.__name__ = method.__name__
        assertion.__doc__ = method.__doc__
        return assertion

    for name in ("assertEqual", "assertListEqual", "assertTupleEqual", "assertDictEqual",
                 "assertSetEqual", "assertMultiLineEqual"):
        setattr(case, name, wrap(getattr(case, name), judge.compared, 2))  # type: ignore[no-untyped-call]
    case.assertSequenceEqual = wrap(case.assertSequenceEqual, judge.sequences, 2)  # type: ignore[no-untyped-call]
    case.assertAlmostEqual = wrap(case.assertAlmostEqual, judge.almost, 2)  # type: ignore[no-untyped-call]
    for name in ("assertTrue", "assertFalse"):
        setattr(case, name, wrap(getattr(case, name), judge.truth, 1))  # type: ignore[no-untyped-call]
    case.assertIn = wrap(case.assertIn, judge.member, 2)  # type: ignore[no-untyped-call]


def _judged_pytest_asserts(pytest, judge_class):  # type: ignore[no-untyped-def]
    """pytest's plain `assert a == b` and `assert a in b`, judged as unittest's assertions are
    (`_Judge`): the assertion rewriter, which compiles every test module's asserts, first turns
    each single `==` or `in` into a call that judges its two values, then compares them. The
    comparison a test makes with `pytest.approx` is judged by what it holds (`_Judge._approx`).
    Returns the rewriter's module, for the tamper check."""
    import ast
    import sys

    from _pytest.assertion import rewrite

    approx = sys.modules[type(pytest.approx(0.0)).__module__]
    judge = judge_class(tuple(
        value for name, value in vars(approx).items()
        if name.startswith("Approx") and isinstance(value, type)))  # pytest's own approx types

    def judged_eq(a, b):  # type: ignore[no-untyped-def]
        if why := judge.compared(a, b):
            raise AssertionError(f"cto-harness: {why}")
        return a == b

    def judged_in(a, b):  # type: ignore[no-untyped-def]
        if why := judge.member(a, b):
            raise AssertionError(f"cto-harness: {why}")
        return a in b

    setattr(rewrite, "_cto_judged_eq", judged_eq)  # noqa: B010  (a module of pytest's)
    setattr(rewrite, "_cto_judged_in", judged_in)  # noqa: B010

    class Judged(ast.NodeTransformer):
        def visit_Compare(self, node):  # type: ignore[no-untyped-def]
            self.generic_visit(node)
            if len(node.ops) != 1 or type(node.ops[0]) not in (ast.Eq, ast.In):
                return node
            name = "_cto_judged_eq" if type(node.ops[0]) is ast.Eq else "_cto_judged_in"
            # `@pytest_ar` is the rewriter's own module, imported by every module it rewrites.
            call = ast.Call(func=ast.Attribute(value=ast.Name("@pytest_ar", ast.Load()),
                                               attr=name, ctx=ast.Load()),
                            args=[node.left, node.comparators[0]], keywords=[])
            return ast.copy_location(call, node)

    original = rewrite.AssertionRewriter.visit_Assert

    def visit_Assert(self, assert_):  # type: ignore[no-untyped-def]
        assert_.test = Judged().visit(assert_.test)
        ast.fix_missing_locations(assert_)
        return original(self, assert_)

    setattr(rewrite.AssertionRewriter, "visit_Assert", visit_Assert)  # noqa: B010
    # pytest reads a cached rewritten module even where it writes none: every test module is
    # rewritten here, judged, from the source the diff shows.
    setattr(rewrite, "_read_pyc", lambda *args, **kwargs: None)  # noqa: B010
    return rewrite


def _unittest(mode: str, args: list[str], emit):  # type: ignore[no-untyped-def]
    import unittest
    import unittest.case
    import unittest.loader
    import unittest.result
    import unittest.runner
    import unittest.suite

    failed_test = getattr(unittest.loader, "_FailedTest", ())

    def flatten(suite):  # type: ignore[no-untyped-def]
        for test in suite:
            if isinstance(test, unittest.TestSuite):
                yield from flatten(test)  # type: ignore[no-untyped-call]
            else:
                yield test

    def may_skip(test) -> bool:  # type: ignore[no-untyped-def]
        """Marked to be skipped or expected to fail (then a failure passes)."""
        method = getattr(test, getattr(test, "_testMethodName", ""), None)
        return any(getattr(holder, mark, False) for holder in (type(test), method)
                   for mark in ("__unittest_skip__", "__unittest_expecting_failure__"))

    class Result(unittest.TextTestResult):
        def startTest(self, test):  # type: ignore[no-untyped-def]
            self._cto_outcome = None
            self._cto_detail = ""
            super().startTest(test)

        def _cto_note(self, test, err) -> None:  # type: ignore[no-untyped-def]
            if not self._cto_detail:
                self._cto_detail = self._exc_info_to_string(err, test)[-4000:]  # type: ignore[attr-defined]

        def _cto_set(self, outcome: str) -> None:
            if getattr(self, "_cto_outcome", None) in (None, "passed"):
                self._cto_outcome = outcome

        def addSuccess(self, test):  # type: ignore[no-untyped-def]
            super().addSuccess(test)
            self._cto_set("passed")

        def addFailure(self, test, err):  # type: ignore[no-untyped-def]
            super().addFailure(test, err)
            self._cto_set("failed")
            self._cto_note(test, err)

        def addError(self, test, err):  # type: ignore[no-untyped-def]
            super().addError(test, err)
            if isinstance(test, unittest.TestCase):
                self._cto_set("error")
                self._cto_note(test, err)
            else:  # a class or module fixture failed: no startTest/stopTest around it
                emit("test", id=str(test.id()), outcome="error",
                     detail=self._exc_info_to_string(err, test)[-4000:])  # type: ignore[attr-defined]

        def addSkip(self, test, reason):  # type: ignore[no-untyped-def]
            super().addSkip(test, reason)
            self._cto_set("skipped")

        def addExpectedFailure(self, test, err):  # type: ignore[no-untyped-def]
            super().addExpectedFailure(test, err)
            self._cto_set("expected_failure")

        def addUnexpectedSuccess(self, test):  # type: ignore[no-untyped-def]
            super().addUnexpectedSuccess(test)
            self._cto_set("unexpected_success")

        def addSubTest(self, test, subtest, err):  # type: ignore[no-untyped-def]
            super().addSubTest(test, subtest, err)
            if err is not None:
                self._cto_outcome = "failed"
                self._cto_note(test, err)

        def stopTest(self, test):  # type: ignore[no-untyped-def]
            super().stopTest(test)
            emit("test", id=str(test.id()), outcome=self._cto_outcome or "no_outcome",
                 detail=self._cto_detail)

    class Runner(unittest.TextTestRunner):
        resultclass = Result  # type: ignore[assignment]

        def run(self, test):  # type: ignore[no-untyped-def]
            if mode != "collect":
                return super().run(test)
            result = unittest.TestResult()
            for item in flatten(test):  # type: ignore[no-untyped-call]
                if failed_test and isinstance(item, failed_test):
                    emit("collect_error", id=str(item.id()))
                    result.errors.append((item, "import failed"))
                else:
                    emit("collected", id=str(item.id()), may_skip=may_skip(item))
            return result

    if mode == "run":
        _strict_asserts(unittest.TestCase, _Judge())  # type: ignore[no-untyped-call]
    owners = {"TestCase": unittest.TestCase, "TestSuite": unittest.TestSuite,
              "BaseTestSuite": unittest.suite.BaseTestSuite, "TestResult": unittest.TestResult,
              "TextTestResult": unittest.TextTestResult, "TestLoader": unittest.TestLoader,
              "TestProgram": unittest.TestProgram, "_Outcome": unittest.case._Outcome,  # type: ignore[attr-defined]
              "Result": Result, "Runner": Runner, "TextTestRunner": unittest.TextTestRunner}
    before = _guard(owners)
    program = unittest.main(module=None, argv=["python -m unittest", *args], testRunner=Runner,
                            exit=False)
    result = program.result
    emit("end", ran=result.testsRun, failures=len(result.failures), errors=len(result.errors),
         unexpected_successes=len(result.unexpectedSuccesses), skipped=len(result.skipped),
         successful=result.wasSuccessful(), tampered=_tampered(before, owners))
    return 0 if result.wasSuccessful() else 1


def _pytest(mode: str, args: list[str], emit):  # type: ignore[no-untyped-def]
    import pytest

    class Plugin:
        def __init__(self) -> None:
            self.outcomes: dict[str, str] = {}
            self.details: dict[str, str] = {}
            self.exitstatus: int | None = None

        def pytest_collectreport(self, report):  # type: ignore[no-untyped-def]
            if report.failed:
                emit("collect_error", id=str(report.nodeid))

        def pytest_collection_finish(self, session):  # type: ignore[no-untyped-def]
            if mode == "collect":
                for item in session.items:
                    marked = any(True for name in ("skip", "skipif", "xfail")
                                 for _ in item.iter_markers(name))
                    emit("collected", id=str(item.nodeid), may_skip=marked)

        def pytest_runtest_logreport(self, report):  # type: ignore[no-untyped-def]
            current = self.outcomes.get(report.nodeid, "passed")
            xfail = hasattr(report, "wasxfail")
            if report.failed:
                outcome = "failed" if report.when == "call" else "error"
            elif report.skipped:
                outcome = "expected_failure" if xfail else "skipped"
            elif report.when == "call" and xfail:
                outcome = "unexpected_success"
            else:
                outcome = "passed"
            if current == "passed" or outcome in ("failed", "error"):
                self.outcomes[report.nodeid] = outcome
                if outcome in ("failed", "error"):
                    self.details[report.nodeid] = str(report.longreprtext)[-4000:]
            if report.when == "teardown":
                emit("test", id=str(report.nodeid), outcome=self.outcomes.pop(report.nodeid),
                     detail=self.details.pop(report.nodeid, ""))

        def pytest_sessionfinish(self, session, exitstatus):  # type: ignore[no-untyped-def]
            self.exitstatus = int(exitstatus)

    plugin = Plugin()
    import _pytest.reports
    import _pytest.runner

    owners = {"runner": _pytest.runner, "TestReport": _pytest.reports.TestReport,
              "Plugin": Plugin}
    if mode == "run":
        import unittest

        rewrite = _judged_pytest_asserts(pytest, _Judge)  # type: ignore[no-untyped-call]
        _strict_asserts(unittest.TestCase, _Judge())  # type: ignore[no-untyped-call]  # pytest runs those
        owners |= {"rewrite": rewrite, "AssertionRewriter": rewrite.AssertionRewriter,
                   "TestCase": unittest.TestCase}
    before = _guard(owners)
    extra = ["-p", "no:cacheprovider"] + (["--collect-only", "-q"] if mode == "collect" else [])
    status = int(pytest.main([*args, *extra], plugins=[plugin]))
    emit("end", exitstatus=status, sessionfinish=plugin.exitstatus,
         tampered=_tampered(before, owners))
    return status


def main() -> int:
    mode, out_fd, token_fd, framework, *args = sys.argv[1:]
    with os.fdopen(int(token_fd), "rb", closefd=True) as source:
        token = source.read(256).decode("ascii").strip()
    fd = int(out_fd)
    os.set_inheritable(fd, False)  # a test's subprocess never holds the channel
    emit = _channel(fd, token)
    del token
    sys.dont_write_bytecode = True
    _source_only(os.getcwd())
    sys.argv = ["python -m " + framework, *args]
    emit("start", framework=framework, mode=mode, python=sys.version.split()[0])
    if framework == "unittest":
        return _unittest(mode, args, emit)  # type: ignore[no-any-return]
    if framework == "pytest":
        return _pytest(mode, args, emit)  # type: ignore[no-any-return]
    print(f"cto-harness test driver: unknown framework {framework!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
