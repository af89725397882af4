"""The plugin manager: built-in and third-party plugins, loaded lazily and isolated.

* Built-ins are the modules in :data:`DEFAULT_PLUGINS`, registered exactly like third-party
  plugins (datasette's pattern); third-party plugins come from the entry-point group
  ``idinvert``, one entry point at a time, so one broken plugin cannot stop the others.
* ``IDINVERT_PLUGINS=a,b`` allow-lists third-party plugins (entry-point or distribution names;
  set but empty = none); ``IDINVERT_DISABLE_PLUGINS=a,b`` blocks plugins, built-ins included
  (``pm.set_blocked``). Both are read at the first :func:`load_plugins`.
* :func:`load_plugins` is lazy and idempotent (llm's pattern); the registration hooks run once,
  the first time operations, commands or plugin information are asked for.
* A plugin that fails to import, fails ``pm.check_pending()`` (a misspelled hook), raises in a
  hook or registers a name another plugin owns is *recorded* (:func:`plugin_errors`), never
  fatal; a name registered twice is unusable until one plugin is disabled, and the error names
  both. The CLI prints the errors as warnings, the demo shows them in a banner.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import os
import re
import threading
from collections.abc import Collection
from dataclasses import dataclass, field, replace
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
OPERATIONS_HOOK = "register_edit_operations"
COMMANDS_HOOK = "register_commands"


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


@dataclass
class _Registrations:
    """What the registration hooks produced (rebuilt when plugins change)."""

    operations: dict[str, EditOperation] = field(default_factory=dict)
    commands: dict[str, click.Command] = field(default_factory=dict)
    owners: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (hook, name)
    errors: list[PluginError] = field(default_factory=list)

    def add(self, hook: str, name: str, item: Any, plugin: str) -> None:
        """Keep ``item`` under ``name`` unless another plugin has it (then neither is usable)."""
        table = self.table(hook)
        owners = self.owners.setdefault((hook, name), [])
        owners.append(plugin)
        if len(owners) == 1:
            table[name] = item
            return
        table.pop(name, None)
        kind = "operation" if hook == OPERATIONS_HOOK else "command"
        self.errors.append(
            PluginError(
                plugin,
                hook,
                f"{kind} {name!r} is already registered by plugin {owners[0]!r}; '{name}' is "
                f"unusable until one is disabled ({DENY_ENV}={plugin})",
            )
        )

    def conflicts(self, hook: str) -> dict[str, list[str]]:
        return {n: list(o) for (h, n), o in self.owners.items() if h == hook and len(o) > 1}

    def table(self, hook: str) -> dict[str, Any]:
        """The usable registrations of ``hook``: operations or commands, by name."""
        return self.operations if hook == OPERATIONS_HOOK else self.commands

    def provided(self, hook: str, plugin: str) -> list[str]:
        """What ``plugin`` registered through ``hook`` and may be used."""
        usable = self.table(hook)
        owned = [n for (h, n), o in self.owners.items() if h == hook and o == [plugin]]
        return [n for n in owned if n in usable]


class _State:
    """All plugin state of the process; :func:`reset_plugins` replaces it."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self.pm.add_hookspecs(hookspecs)
        self.loaded = False
        self.infos: dict[str, PluginInfo] = {}  # registration order: built-ins first
        self.errors: list[PluginError] = []  # import / register / validate
        self.registrations: _Registrations | None = None
        self.collecting = False

    def record(self, plugin: str, stage: str, exc: BaseException | str) -> None:
        self.errors.append(PluginError(plugin, stage, exc if isinstance(exc, str) else _line(exc)))

    def register(self, plugin: object, info: PluginInfo) -> bool:
        """Register ``plugin`` under ``info.name`` (blocked → disabled; failures recorded)."""
        self.infos[info.name] = info
        try:
            if self.pm.register(plugin, info.name) is None:
                info.status = "disabled"
                return False
        except Exception as exc:  # PluginValidationError, ValueError (name taken)
            self.record(info.name, "register", exc)
            return False
        info.hooks = sorted(h.name for h in self.pm.get_hookcallers(plugin) or [])
        return True

    def check_pending(self) -> None:
        """``pm.check_pending()``; each plugin with an unknown hook is recorded and removed."""
        while True:
            try:
                self.pm.check_pending()
                return
            except pluggy.PluginValidationError as exc:
                name = self.pm.get_name(exc.plugin) or repr(exc.plugin)
                self.record(name, "validate", exc)
                self.pm.unregister(exc.plugin)
                if name in self.infos:
                    self.infos[name].hooks = []


_lock = threading.RLock()
_state = _State()


def _line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


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
        for module_name in DEFAULT_PLUGINS:
            info = PluginInfo(module_name, True, version=version, distribution="idinvert")
            _load_one(state, info, {_canonical(module_name)}, deny, None, module_name)
        _load_entry_points(state, _names(ALLOW_ENV), deny)
        state.check_pending()
        return state.pm


def _load_entry_points(state: _State, allow: set[str] | None, deny: set[str]) -> None:
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        dist_name = dist.metadata["Name"] if dist is not None else None
        if ep.name in state.infos:
            owner = state.infos[ep.name].distribution or "a built-in plugin"
            state.record(
                ep.name,
                "register",
                f"entry point name already used by {owner}; {dist_name or ep.value} was not loaded",
            )
            continue
        version = dist.version if dist is not None else None
        info = PluginInfo(ep.name, False, version=version, distribution=dist_name, module=ep.module)
        names = {_canonical(ep.name)} | ({_canonical(dist_name)} if dist_name else set())
        _load_one(state, info, names, deny, allow, ep)


def _load_one(
    state: _State,
    info: PluginInfo,
    names: set[str],
    deny: set[str],
    allow: set[str] | None,
    source: str | importlib.metadata.EntryPoint,
) -> None:
    """Import a module (name or entry point) and register it, unless allow/deny say no."""
    if names & deny or (allow is not None and not names & allow):
        state.pm.set_blocked(info.name)
        info.status = "disabled"
        state.infos[info.name] = info
        return
    try:
        plugin = importlib.import_module(source) if isinstance(source, str) else source.load()
    except (Exception, SystemExit) as exc:
        state.infos[info.name] = info
        state.record(info.name, "import", exc)
        return
    info.module = getattr(plugin, "__name__", info.module)
    state.register(plugin, info)


def _registrations() -> _Registrations:
    """Run the registration hooks of every plugin, once (thread-safe, not re-entrant)."""
    load_plugins()
    with _lock:
        state = _state
        if state.collecting:
            raise RuntimeError(
                "edit operations or commands requested from inside a registration hook"
            )
        if state.registrations is None:
            state.collecting = True
            try:
                state.registrations = _collect(state)
            finally:
                state.collecting = False
        return state.registrations


def _collect(state: _State) -> _Registrations:
    import click

    from idinvert.core.edit import EditOperation

    out = _Registrations()
    for name in list(state.infos):
        plugin = state.pm.get_plugin(name)
        if plugin is None:
            continue
        ops: list[EditOperation] = []

        def register(op: EditOperation, _ops: list[EditOperation] = ops) -> None:
            if not isinstance(op, EditOperation):
                raise TypeError(f"register() takes an EditOperation, got {type(op).__name__}")
            if any(o.name == op.name for o in _ops):
                raise ValueError(f"operation {op.name!r} registered twice by the same plugin")
            _ops.append(op)

        if _call(state, out, name, OPERATIONS_HOOK, register=register):
            for op in ops:
                out.add(OPERATIONS_HOOK, op.name, replace(op, plugin=name), name)
        group = click.Group(name)
        if _call(state, out, name, COMMANDS_HOOK, cli=group):
            for command_name, command in group.commands.items():
                out.add(COMMANDS_HOOK, command_name, command, name)
    return out


def _call(state: _State, out: _Registrations, name: str, hook: str, **kwargs: Any) -> bool:
    """Call only plugin ``name``'s implementation of ``hook``; ``False`` if it has none or
    it raised (recorded: a plugin that raises contributes nothing)."""
    if hook not in state.infos[name].hooks:
        return False
    plugin = state.pm.get_plugin(name)
    others = [p for p in state.pm.get_plugins() if p is not plugin]
    try:
        state.pm.subset_hook_caller(hook, remove_plugins=others)(**kwargs)
    except Exception as exc:
        out.errors.append(PluginError(name, hook, _line(exc)))
        return False
    return True


def edit_operations() -> dict[str, EditOperation]:
    """Name → usable :class:`~idinvert.core.edit.EditOperation`, built-ins first, then
    third-party plugins, each in registration order (conflicting names are left out)."""
    return dict(_registrations().operations)


def operation_conflicts() -> dict[str, list[str]]:
    """Operation name → the plugins that all registered it (those names are unusable)."""
    return _registrations().conflicts(OPERATIONS_HOOK)


def get_edit_operation(name: str) -> EditOperation:
    """The operation ``name``.

    Raises:
        OperationConflictError: several plugins registered ``name`` (all are named).
        UnknownOperationError: no such operation (the message lists the known ones).
    """
    regs = _registrations()
    if name in regs.operations:
        return regs.operations[name]
    owners = regs.conflicts(OPERATIONS_HOOK).get(name)
    if owners:
        raise OperationConflictError(
            f"edit operation {name!r} is registered by several plugins: "
            f"{', '.join(repr(p) for p in owners)}; disable all but one with "
            f"{DENY_ENV}={owners[-1]}"
        )
    raise UnknownOperationError(
        f"no edit operation {name!r}; available: {', '.join(sorted(regs.operations)) or 'none'}"
    )


def plugin_commands(reserved: Collection[str] = ()) -> dict[str, click.Command]:
    """Name → click command registered by plugins through ``register_commands``.

    ``reserved``: the host's own command names (the CLI passes its subcommand table); a plugin
    command with such a name is dropped and recorded, once, as that plugin's error.
    """
    regs = _registrations()
    with _lock:
        for name in [n for n in regs.commands if n in reserved]:
            del regs.commands[name]
            owner = regs.owners[(COMMANDS_HOOK, name)][0]
            regs.errors.append(
                PluginError(owner, COMMANDS_HOOK, f"command {name!r} is a built-in command")
            )
        return dict(regs.commands)


def plugin_errors() -> list[PluginError]:
    """Every recorded plugin failure (loads plugins and runs the registration hooks first)."""
    regs = _registrations()
    return [*_state.errors, *regs.errors]


def plugin_infos(include_builtins: bool = False) -> list[PluginInfo]:
    """Information on every known plugin (loads them and runs the registration hooks).

    Args:
        include_builtins: also list :data:`DEFAULT_PLUGINS` (``idinvert plugins --all``).

    Returns:
        Built-ins first (in :data:`DEFAULT_PLUGINS` order), then third-party plugins by name.
    """
    errors = plugin_errors()
    regs = _registrations()
    infos = []
    for base in _state.infos.values():
        if base.builtin and not include_builtins:
            continue
        info = replace(base, hooks=list(base.hooks))
        info.operations = regs.provided(OPERATIONS_HOOK, info.name)
        info.commands = regs.provided(COMMANDS_HOOK, info.name)
        info.errors = [f"{e.stage}: {e.message}" for e in errors if e.plugin == info.name]
        if info.errors and info.status != "disabled":
            info.status = "error"
        infos.append(info)
    return sorted(infos, key=lambda i: (not i.builtin, 0 if i.builtin else i.name.lower()))


def register_plugin(plugin: object, name: str | None = None) -> str | None:
    """Register a plugin object or module at runtime (tests, notebooks, embedding apps).

    Its hooks are validated like installed plugins; failures are recorded, not raised.

    Returns:
        The plugin name, or ``None`` if it was blocked or failed to register.
    """
    load_plugins()
    with _lock:
        name = name or getattr(plugin, "__name__", None) or f"plugin-{id(plugin)}"
        module = getattr(plugin, "__name__", None) or type(plugin).__module__
        ok = _state.register(plugin, PluginInfo(name, False, module=module))
        _state.check_pending()
        _state.registrations = None
        return name if ok and _state.pm.get_plugin(name) is not None else None


def unregister_plugin(name: str) -> None:
    """Remove a plugin (one registered at runtime, or any plugin) by name."""
    with _lock:
        if _state.pm.get_plugin(name) is not None:
            _state.pm.unregister(name=name)
        _state.infos.pop(name, None)
        _state.errors = [e for e in _state.errors if e.plugin != name]
        _state.registrations = None


def reset_plugins() -> None:
    """Forget all plugin state; the next call loads plugins afresh (re-reading the
    environment). Meant for tests."""
    global _state
    with _lock:
        _state = _State()
