"""The plugin manager: built-in and third-party plugins, loaded lazily and isolated.

* Built-ins are the modules in :data:`DEFAULT_PLUGINS`, registered exactly like third-party
  plugins (datasette's pattern); third-party plugins come from the entry-point group
  ``idinvert``, one entry point at a time, so one broken plugin cannot stop the others.
* ``IDINVERT_PLUGINS=a,b`` allow-lists third-party plugins (entry-point or distribution names;
  set but empty = none); ``IDINVERT_DISABLE_PLUGINS=a,b`` blocks plugins, built-ins included
  (``pm.set_blocked``). Both are read by the first :func:`load_plugins`.
* :func:`load_plugins` is lazy and idempotent (llm's pattern); the registration hooks run once,
  each plugin's alone, the first time operations, commands or plugin information are needed.
* A plugin that fails to import, fails ``pm.check_pending()`` (a misspelled hook), raises in a
  hook or registers a name another plugin owns is *recorded* (:func:`plugin_errors`), never
  fatal; a name two plugins register is unusable until one is disabled, and the error names
  both. The CLI prints the errors as warnings, the demo shows them in a banner.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import os
import re
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pluggy

from idinvert.core import hookspecs
from idinvert.core.errors import IdinvertError

if TYPE_CHECKING:
    import click

    from idinvert.core.edit import EditOperation

#: Built-in plugins, registered exactly like third-party ones (in this order).
DEFAULT_PLUGINS: tuple[str, ...] = (
    "idinvert.plugins.interpolate",
    "idinvert.plugins.manipulate",
    "idinvert.plugins.diffuse",
    "idinvert.plugins.mix",
)
#: Entry-point group of third-party plugins (also the pluggy project name).
ENTRY_POINT_GROUP = "idinvert"
#: Allow-list of third-party plugins (comma-separated names; set but empty = none).
ALLOW_ENV = "IDINVERT_PLUGINS"
#: Deny-list (comma-separated plugin, entry-point or distribution names; built-ins too).
DENY_ENV = "IDINVERT_DISABLE_PLUGINS"
_OPS, _COMMANDS = "register_edit_operations", "register_commands"


class UnknownOperationError(IdinvertError, LookupError):
    """No edit operation of that name is registered."""


class OperationConflictError(IdinvertError, LookupError):
    """Two plugins registered the same operation name."""


@dataclass(frozen=True)
class PluginError:
    """A recorded plugin failure.

    Attributes:
        plugin: plugin name (module name for built-ins, entry-point name otherwise).
        stage: ``"import"``, ``"register"``, ``"validate"`` (check_pending) or the hook name.
        message: the error, one line.
    """

    plugin: str
    stage: str
    message: str

    def __str__(self) -> str:
        return f"plugin {self.plugin!r} failed ({self.stage}): {self.message}"


@dataclass
class PluginInfo:
    """What ``idinvert plugins`` shows about one plugin.

    Attributes:
        name: plugin name.
        builtin: part of idinvert (:data:`DEFAULT_PLUGINS`).
        status: ``"loaded"``, ``"error"`` (see ``errors``) or ``"disabled"``.
        version: distribution version (idinvert's for built-ins), if known.
        distribution: distribution name, if any.
        module: the imported module's name, if any.
        hooks: hook names it implements.
        operations: edit operations it registered.
        commands: CLI commands it registered.
        errors: what went wrong, ``"stage: message"``.
    """

    name: str
    builtin: bool
    status: str = "loaded"
    version: str | None = None
    distribution: str | None = None
    module: str | None = None
    hooks: list[str] = field(default_factory=list)
    operations: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class _State:
    """All plugin state of the process (:func:`reset_plugins` replaces it).

    ``owners[(hook, name)]`` lists the plugins that registered ``name`` through ``hook``; only
    names with one owner are usable (``items[hook][name]``).
    """

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self.pm.add_hookspecs(hookspecs)
        self.loaded = self.collecting = False
        self.infos: dict[str, PluginInfo] = {}  # registration order: built-ins first
        self.errors: list[PluginError] = []
        self.items: dict[str, dict[str, Any]] | None = None  # None: hooks not run yet
        self.owners: dict[tuple[str, str], list[str]] = {}

    def fail(self, plugin: str, stage: str, error: BaseException | str) -> None:
        if isinstance(error, BaseException):
            text = " ".join(str(error).split())
            error = f"{type(error).__name__}: {text}" if text else type(error).__name__
        self.errors.append(PluginError(plugin, stage, error))

    def add(self, info: PluginInfo, load: Callable[[], object], blocked: bool = False) -> bool:
        """Import (``load()``) and register one plugin (blocked ones are only listed).

        Returns:
            Whether it is registered; failures are recorded.
        """
        if info.name in self.infos:
            other = self.infos[info.name].distribution or "another plugin"
            new = info.distribution or info.module
            self.fail(info.name, "register", f"name already used by {other}; {new} not loaded")
            return False
        self.infos[info.name] = info
        if blocked:
            self.pm.set_blocked(info.name)
            info.status = "disabled"
            return False
        try:
            plugin = load()
            info.module = getattr(plugin, "__name__", None) or info.module
        except (Exception, SystemExit) as exc:
            self.fail(info.name, "import", exc)
            return False
        try:
            if self.pm.register(plugin, info.name) is None:
                info.status = "disabled"
                return False
        except Exception as exc:  # PluginValidationError, ValueError (name taken)
            self.fail(info.name, "register", exc)
            return False
        info.hooks = sorted(h.name for h in self.pm.get_hookcallers(plugin) or [])
        return True

    def check_pending(self) -> None:
        """``pm.check_pending()``; each plugin with an unknown hook is recorded and removed."""
        while True:
            try:
                return self.pm.check_pending()
            except pluggy.PluginValidationError as exc:
                name = self.pm.get_name(exc.plugin) or repr(exc.plugin)
                self.fail(name, "validate", exc)
                self.pm.unregister(exc.plugin)
                if name in self.infos:
                    self.infos[name].hooks = []

    def uncollect(self) -> None:
        """Forget what the registration hooks produced (the plugins changed)."""
        self.items, self.owners = None, {}
        self.errors = [e for e in self.errors if e.stage not in (_OPS, _COMMANDS)]

    def collect(self) -> dict[str, dict[str, Any]]:
        """Run every plugin's registration hooks, each plugin's alone."""
        import click

        from idinvert.core.edit import EditOperation

        items: dict[str, dict[str, Any]] = {_OPS: {}, _COMMANDS: {}}
        for name, info in self.infos.items():
            ops: list[EditOperation] = []

            def register(op: EditOperation, ops: list[EditOperation] = ops) -> None:
                if not isinstance(op, EditOperation):
                    raise TypeError(f"register() takes an EditOperation, got {type(op).__name__}")
                if any(o.name == op.name for o in ops):
                    raise ValueError(f"operation {op.name!r} registered twice by the same plugin")
                ops.append(op)

            group = click.Group(name)
            for hook, kwargs in ((_OPS, {"register": register}), (_COMMANDS, {"cli": group})):
                plugin = self.pm.get_plugin(name)
                if plugin is None or hook not in info.hooks:
                    continue
                others = [p for p in self.pm.get_plugins() if p is not plugin]
                try:  # a plugin whose hook raises contributes nothing
                    self.pm.subset_hook_caller(hook, remove_plugins=others)(**kwargs)
                except Exception as exc:
                    self.fail(name, hook, exc)
                    continue
                got = group.commands if hook == _COMMANDS else {o.name: o for o in ops}
                for key, item in got.items():
                    self.own(items[hook], hook, key, item, name)
        return items

    def own(self, table: dict[str, Any], hook: str, key: str, item: Any, plugin: str) -> None:
        """``table[key] = item``, unless another plugin has ``key`` (then neither is usable)."""
        owners = self.owners.setdefault((hook, key), [])
        owners.append(plugin)
        if len(owners) == 1:
            table[key] = dataclasses.replace(item, plugin=plugin) if hook == _OPS else item
            return
        table.pop(key, None)
        kind = "operation" if hook == _OPS else "command"
        self.fail(
            plugin,
            hook,
            f"{kind} {key!r} is already registered by plugin {owners[0]!r}; '{key}' is unusable "
            f"until one is disabled ({DENY_ENV}={plugin})",
        )


_lock = threading.RLock()
_state = _State()


def _names(var: str) -> set[str] | None:
    """Canonical names listed in environment variable ``var`` (``None`` when unset)."""
    raw = os.environ.get(var)
    return None if raw is None else {_canonical(n) for n in raw.split(",") if n.strip()}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


def load_plugins() -> pluggy.PluginManager:
    """Load built-in and installed plugins once (later calls return the same manager)."""
    with _lock:
        state = _state
        if state.loaded:
            return state.pm
        state.loaded = True  # before importing anything: a plugin may call back into us
        deny = _names(DENY_ENV) or set()
        for name in os.environ.get(DENY_ENV, "").split(","):
            if name.strip():
                state.pm.set_blocked(name.strip())  # runtime registration under it too
        try:
            version = importlib.metadata.version("idinvert")
        except importlib.metadata.PackageNotFoundError:
            version = None
        for module in DEFAULT_PLUGINS:
            info = PluginInfo(module, True, version=version, distribution="idinvert")
            state.add(info, lambda m=module: importlib.import_module(m), _canonical(module) in deny)
        _load_entry_points(state, _names(ALLOW_ENV), deny)
        state.check_pending()
        return state.pm


def _load_entry_points(state: _State, allow: set[str] | None, deny: set[str]) -> None:
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        dist_name = dist.metadata["Name"] if dist is not None else None
        version = dist.version if dist is not None else None
        info = PluginInfo(ep.name, False, version=version, distribution=dist_name, module=ep.module)
        names = {_canonical(ep.name)} | ({_canonical(dist_name)} if dist_name else set())
        state.add(info, ep.load, bool(names & deny) or (allow is not None and not names & allow))


def _collected() -> _State:
    """The state after every plugin's registration hooks ran (once; not from inside a hook)."""
    load_plugins()
    with _lock:
        state = _state
        if state.collecting:
            raise RuntimeError(
                "edit operations or commands requested from inside a registration hook"
            )
        if state.items is None:
            state.collecting = True
            try:
                state.items = state.collect()
            finally:
                state.collecting = False
        return state


def _conflicts(state: _State, hook: str) -> dict[str, list[str]]:
    return {n: list(o) for (h, n), o in state.owners.items() if h == hook and len(o) > 1}


def edit_operations() -> dict[str, EditOperation]:
    """Name → usable :class:`~idinvert.core.edit.EditOperation`, built-ins first, then
    third-party plugins, each in registration order (conflicting names are left out)."""
    return dict(_collected().items[_OPS])


def operation_conflicts() -> dict[str, list[str]]:
    """Operation name → the plugins that all registered it (those names are unusable)."""
    return _conflicts(_collected(), _OPS)


def get_edit_operation(name: str) -> EditOperation:
    """The operation ``name``.

    Raises:
        OperationConflictError: several plugins registered ``name`` (all are named).
        UnknownOperationError: no such operation (the message lists the known ones).
    """
    state = _collected()
    ops = state.items[_OPS]
    if name in ops:
        return ops[name]
    owners = _conflicts(state, _OPS).get(name)
    if owners:
        raise OperationConflictError(
            f"edit operation {name!r} is registered by several plugins: "
            f"{', '.join(repr(p) for p in owners)}; disable all but one with "
            f"{DENY_ENV}={owners[-1]}"
        )
    raise UnknownOperationError(
        f"no edit operation {name!r}; available: {', '.join(sorted(ops)) or 'none'}"
    )


def plugin_commands(reserved: Collection[str] = ()) -> dict[str, click.Command]:
    """Name → click command registered by plugins through ``register_commands``.

    ``reserved``: the host's own command names (the CLI passes its subcommand table); a plugin
    command with such a name is dropped and recorded, once, as that plugin's error.
    """
    state = _collected()
    with _lock:
        commands = state.items[_COMMANDS]
        for name in [n for n in commands if n in reserved]:
            del commands[name]
            owner = state.owners[(_COMMANDS, name)][0]
            state.fail(owner, _COMMANDS, f"command {name!r} is a built-in command")
        return dict(commands)


def plugin_errors() -> list[PluginError]:
    """Every recorded plugin failure (loads plugins and runs the registration hooks first)."""
    return list(_collected().errors)


def plugin_infos(include_builtins: bool = False) -> list[PluginInfo]:
    """Information on every known plugin (loads them and runs the registration hooks).

    Args:
        include_builtins: also list :data:`DEFAULT_PLUGINS` (``idinvert plugins --all``).

    Returns:
        Built-ins first (in :data:`DEFAULT_PLUGINS` order), then third-party plugins by name.
    """
    state = _collected()
    infos = []
    for base in state.infos.values():
        if base.builtin and not include_builtins:
            continue
        info = dataclasses.replace(base, hooks=list(base.hooks))
        for hook, provided in ((_OPS, info.operations), (_COMMANDS, info.commands)):
            owned = [n for (h, n), o in state.owners.items() if h == hook and o == [info.name]]
            provided.extend(n for n in owned if n in state.items[hook])
        info.errors = [f"{e.stage}: {e.message}" for e in state.errors if e.plugin == info.name]
        if info.errors and info.status != "disabled":
            info.status = "error"
        infos.append(info)
    return sorted(infos, key=lambda i: (not i.builtin, 0 if i.builtin else i.name.lower()))


def register_plugin(plugin: object, name: str | None = None) -> str | None:
    """Register a plugin object or module at runtime (notebooks, embedding apps, tests).

    Its hooks are validated like installed plugins; failures are recorded, not raised.

    Returns:
        The plugin name, or ``None`` if it was blocked or failed to register.
    """
    load_plugins()
    with _lock:
        name = name or getattr(plugin, "__name__", None) or f"plugin-{id(plugin)}"
        module = getattr(plugin, "__name__", None) or type(plugin).__module__
        added = _state.add(PluginInfo(name, False, module=module), lambda: plugin)
        _state.check_pending()
        _state.uncollect()
        return name if added and _state.pm.get_plugin(name) is not None else None


def reset_plugins() -> None:
    """Forget all plugin state, runtime registrations included; the next call loads plugins
    afresh (re-reading the environment)."""
    global _state
    with _lock:
        _state = _State()
