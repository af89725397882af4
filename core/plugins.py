"""The plugin manager: built-in and third-party plugins, loaded lazily and isolated.

* Built-ins are the modules in :data:`DEFAULT_PLUGINS`, registered through the same hooks as
  third-party plugins (datasette's pattern).
* Third-party plugins come from the entry-point group ``idinvert`` (pluggy's
  ``load_setuptools_entrypoints``, re-implemented per entry point so that one broken plugin
  cannot stop the others from loading).
* ``IDINVERT_PLUGINS=a,b`` is an allow-list of third-party plugins (entry-point or
  distribution names; empty = none); ``IDINVERT_DISABLE_PLUGINS=a,b`` blocks plugins, built-ins
  included (``pm.set_blocked``). Both are read once, at the first :func:`load_plugins`.
* Everything is lazy and idempotent: nothing is imported until a front end asks for
  operations, commands or plugin information.
* A plugin that fails to import, fails hook validation (``pm.check_pending()``: misspelled
  hook names), raises inside a hook or registers a name another plugin already owns is
  *recorded* (:func:`plugin_errors`); the rest keep working. The CLI prints the errors as
  warnings and the demo shows them in a banner.
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
#: pluggy project name and entry-point group.
PROJECT = "idinvert"
ENTRY_POINT_GROUP = "idinvert"
#: Allow-list of third-party plugins (comma-separated names; set but empty = none).
ALLOW_ENV = "IDINVERT_PLUGINS"
#: Deny-list (comma-separated plugin, entry-point or distribution names; built-ins too).
DENY_ENV = "IDINVERT_DISABLE_PLUGINS"

STATUS_LOADED = "loaded"
STATUS_ERROR = "error"
STATUS_DISABLED = "disabled"


class UnknownOperationError(IdinvertError, LookupError):
    """No edit operation of that name is registered."""


class OperationConflictError(IdinvertError, LookupError):
    """Two plugins registered the same operation (or command) name."""


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
        errors: what went wrong.
    """

    name: str
    builtin: bool
    status: str = STATUS_LOADED
    version: str | None = None
    distribution: str | None = None
    module: str | None = None
    hooks: list[str] = field(default_factory=list)
    operations: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class _Registry:
    """All plugin state of the process (one instance; :func:`reset_plugins` replaces it)."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.loaded = False
        self.infos: dict[str, PluginInfo] = {}
        self.errors: list[PluginError] = []
        self.operations: dict[str, EditOperation] | None = None
        self.operation_conflicts: dict[str, list[str]] = {}
        self.commands: dict[str, click.Command] | None = None
        self.command_conflicts: dict[str, list[str]] = {}
        self.collecting = False  # inside a registration hook (guards re-entrant calls)

    # -- bookkeeping -------------------------------------------------------------------

    def record(self, plugin: str, stage: str, exc: BaseException | str) -> None:
        message = exc if isinstance(exc, str) else _one_line(exc)
        self.errors.append(PluginError(plugin, stage, message))
        info = self.infos.get(plugin)
        if info is not None:
            info.status = STATUS_ERROR
            info.errors.append(f"{stage}: {message}")

    def invalidate(self) -> None:
        self.operations = None
        self.commands = None
        self.operation_conflicts = {}
        self.command_conflicts = {}
        self.errors = [e for e in self.errors if e.stage in ("import", "register", "validate")]
        for info in self.infos.values():
            info.operations, info.commands = [], []
            info.errors = [
                e for e in info.errors if e.split(":", 1)[0] in ("import", "register", "validate")
            ]
            if info.status == STATUS_ERROR and not info.errors:
                info.status = STATUS_LOADED

    def ordered_plugins(self) -> list[tuple[str, object]]:
        """(name, plugin) in registration order (built-ins first)."""
        out = []
        for name in self.infos:
            plugin = self.pm.get_plugin(name)
            if plugin is not None:
                out.append((name, plugin))
        return out

    def register(self, plugin: object, name: str, info: PluginInfo) -> bool:
        self.infos[name] = info
        try:
            if self.pm.register(plugin, name) is None:
                info.status = STATUS_DISABLED
                return False
        except Exception as exc:  # PluginValidationError, ValueError (already registered)
            self.record(name, "register", exc)
            return False
        info.hooks = sorted(h.name for h in self.pm.get_hookcallers(plugin) or [])
        return True

    def check_pending(self) -> None:
        """``pm.check_pending()``, unregistering (and recording) each offending plugin."""
        for _ in range(len(self.infos) + 1):
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
_registry: _Registry | None = None


def _state() -> _Registry:
    global _registry
    with _lock:
        if _registry is None:
            _registry = _Registry()
        return _registry


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _env_names(var: str) -> set[str] | None:
    raw = os.environ.get(var)
    if raw is None:
        return None
    return {n.strip() for n in raw.split(",") if n.strip()}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _idinvert_version() -> str | None:
    try:
        return importlib.metadata.version("idinvert")
    except importlib.metadata.PackageNotFoundError:
        return None


def load_plugins() -> pluggy.PluginManager:
    """Load built-in and installed plugins once (later calls return the same manager).

    Returns:
        The ``pluggy.PluginManager``; failures are in :func:`plugin_errors`.
    """
    with _lock:
        reg = _state()
        if reg.loaded:
            return reg.pm
        reg.loaded = True  # before importing anything: a plugin may call back into us
        allow = _env_names(ALLOW_ENV)
        deny = _env_names(DENY_ENV) or set()
        deny_canonical = {_canonical(n) for n in deny}
        for name in deny:
            reg.pm.set_blocked(name)
        version = _idinvert_version()
        for module_name in DEFAULT_PLUGINS:
            info = PluginInfo(module_name, builtin=True, version=version, distribution="idinvert")
            if reg.pm.is_blocked(module_name):
                info.status = STATUS_DISABLED
                reg.infos[module_name] = info
                continue
            try:
                module = importlib.import_module(module_name)
            except (Exception, SystemExit) as exc:
                reg.infos[module_name] = info
                reg.record(module_name, "import", exc)
                continue
            info.module = module.__name__
            reg.register(module, module_name, info)
        _load_entry_points(reg, allow, deny_canonical)
        reg.check_pending()
        return reg.pm


def _load_entry_points(reg: _Registry, allow: set[str] | None, deny: set[str]) -> None:
    allow_canonical = None if allow is None else {_canonical(n) for n in allow}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        dist_name = dist.metadata["Name"] if dist is not None else None
        info = PluginInfo(
            ep.name,
            builtin=False,
            version=dist.version if dist is not None else None,
            distribution=dist_name,
            module=ep.module,
        )
        if ep.name in reg.infos:
            other = reg.infos[ep.name]
            reg.errors.append(
                PluginError(
                    ep.name,
                    "register",
                    "entry point name already used by "
                    f"{other.distribution or 'a built-in plugin'}; "
                    f"{dist_name or ep.value} was not loaded",
                )
            )
            continue
        names = {_canonical(ep.name)} | ({_canonical(dist_name)} if dist_name else set())
        if (
            names & deny
            or reg.pm.is_blocked(ep.name)
            or (allow_canonical is not None and not names & allow_canonical)
        ):
            info.status = STATUS_DISABLED
            reg.infos[ep.name] = info
            reg.pm.set_blocked(ep.name)
            continue
        try:
            plugin = ep.load()
        except (Exception, SystemExit) as exc:
            reg.infos[ep.name] = info
            reg.record(ep.name, "import", exc)
            continue
        reg.register(plugin, ep.name, info)


def get_plugin_manager() -> pluggy.PluginManager:
    """The loaded plugin manager (same as :func:`load_plugins`)."""
    return load_plugins()


def _single_caller(
    pm: pluggy.PluginManager, hook: str, plugin: object
) -> Callable[..., Any] | None:
    """A hook caller that only runs ``plugin``'s implementation (``None`` if it has none)."""
    caller = getattr(pm.hook, hook)
    if not any(impl.plugin is plugin for impl in caller.get_hookimpls()):
        return None
    others = [p for p in pm.get_plugins() if p is not plugin]
    return pm.subset_hook_caller(hook, remove_plugins=others)


def _collect_operations(reg: _Registry) -> None:
    from idinvert.core.edit import EditOperation

    ops: dict[str, EditOperation] = {}
    owners: dict[str, list[str]] = {}
    for name, plugin in reg.ordered_plugins():
        caller = _single_caller(reg.pm, "register_edit_operations", plugin)
        if caller is None:
            continue
        batch: list[EditOperation] = []

        def register(op: EditOperation, _batch: list[EditOperation] = batch) -> None:
            if not isinstance(op, EditOperation):
                raise TypeError(f"register() takes an EditOperation, got {type(op).__name__}")
            if any(o.name == op.name for o in _batch):
                raise ValueError(f"operation {op.name!r} registered twice by the same plugin")
            _batch.append(op)

        try:
            caller(register=register)
        except Exception as exc:
            reg.record(name, "register_edit_operations", exc)
            continue  # a plugin that raises contributes nothing
        for op in batch:
            owners.setdefault(op.name, []).append(name)
            if len(owners[op.name]) > 1:
                first = owners[op.name][0]
                reg.record(
                    name,
                    "register_edit_operations",
                    f"operation {op.name!r} is already registered by plugin {first!r}; "
                    f"'{op.name}' is unusable until one is disabled ({DENY_ENV}={name})",
                )
                continue
            ops[op.name] = dataclasses.replace(op, plugin=name)
            reg.infos[name].operations.append(op.name)
    reg.operation_conflicts = {k: v for k, v in owners.items() if len(v) > 1}
    for conflicted in reg.operation_conflicts:
        ops.pop(conflicted, None)
    reg.operations = ops


def _collect_commands(reg: _Registry) -> None:
    import click

    commands: dict[str, click.Command] = {}
    owners: dict[str, list[str]] = {}
    for name, plugin in reg.ordered_plugins():
        caller = _single_caller(reg.pm, "register_commands", plugin)
        if caller is None:
            continue
        group = click.Group(name)
        try:
            caller(cli=group)
        except Exception as exc:
            reg.record(name, "register_commands", exc)
            continue
        for cmd_name, command in group.commands.items():
            owners.setdefault(cmd_name, []).append(name)
            if len(owners[cmd_name]) > 1:
                reg.record(
                    name,
                    "register_commands",
                    f"command {cmd_name!r} is already registered by plugin {owners[cmd_name][0]!r}",
                )
                continue
            commands[cmd_name] = command
            reg.infos[name].commands.append(cmd_name)
    reg.command_conflicts = {k: v for k, v in owners.items() if len(v) > 1}
    for conflicted in reg.command_conflicts:
        commands.pop(conflicted, None)
    reg.commands = commands


def _ensure_operations(reg: _Registry) -> dict[str, EditOperation]:
    load_plugins()
    with _lock:
        if reg.operations is None:
            if reg.collecting:
                raise RuntimeError(
                    "edit operations are requested from inside register_edit_operations"
                )
            reg.collecting = True
            try:
                _collect_operations(reg)
            finally:
                reg.collecting = False
        assert reg.operations is not None
        return reg.operations


def edit_operations() -> dict[str, EditOperation]:
    """Name → usable :class:`~idinvert.core.edit.EditOperation`, built-ins first, then
    third-party plugins, each in registration order (conflicting names are left out)."""
    return dict(_ensure_operations(_state()))


def operation_conflicts() -> dict[str, list[str]]:
    """Operation name → the plugins that all registered it (those names are unusable)."""
    reg = _state()
    _ensure_operations(reg)
    return {k: list(v) for k, v in reg.operation_conflicts.items()}


def get_edit_operation(name: str) -> EditOperation:
    """The operation ``name``.

    Raises:
        OperationConflictError: several plugins registered ``name`` (both are named).
        UnknownOperationError: no such operation (the message lists the known ones).
    """
    reg = _state()
    ops = _ensure_operations(reg)
    if name in ops:
        return ops[name]
    if name in reg.operation_conflicts:
        plugins = reg.operation_conflicts[name]
        raise OperationConflictError(
            f"edit operation {name!r} is registered by several plugins: "
            f"{', '.join(repr(p) for p in plugins)}; disable all but one with "
            f"{DENY_ENV}={plugins[-1]}"
        )
    raise UnknownOperationError(
        f"no edit operation {name!r}; available: {', '.join(sorted(ops)) or 'none'}"
    )


def plugin_commands(reserved: Collection[str] = ()) -> dict[str, click.Command]:
    """Name → click command registered by plugins through ``register_commands``.

    ``reserved``: the host's own command names (the CLI passes its subcommand table); a plugin
    command with such a name is left out and recorded as that plugin's error.
    """
    reg = _state()
    load_plugins()
    with _lock:
        if reg.commands is None:
            if reg.collecting:
                raise RuntimeError("plugin commands are requested from inside a registration hook")
            reg.collecting = True
            try:
                _collect_commands(reg)
            finally:
                reg.collecting = False
        assert reg.commands is not None
        out = {}
        for cmd_name, command in list(reg.commands.items()):
            if cmd_name not in reserved:
                out[cmd_name] = command
                continue
            owner = next(n for n, i in reg.infos.items() if cmd_name in i.commands)
            reg.infos[owner].commands.remove(cmd_name)
            del reg.commands[cmd_name]  # reported once
            reg.record(owner, "register_commands", f"command {cmd_name!r} is a built-in command")
        return out


def add_plugin_commands(group: click.Group) -> None:
    """Add every plugin command to ``group`` (names the group already has are skipped)."""
    for name, command in plugin_commands().items():
        if name not in group.commands:
            group.add_command(command, name)


def plugin_errors() -> list[PluginError]:
    """Every recorded plugin failure (loads plugins and runs the registration hooks first)."""
    reg = _state()
    _ensure_operations(reg)
    plugin_commands()
    return list(reg.errors)


def plugin_infos(include_builtins: bool = False) -> list[PluginInfo]:
    """Information on every known plugin (loads them and runs the registration hooks).

    Args:
        include_builtins: also list :data:`DEFAULT_PLUGINS` (``idinvert plugins --all``).

    Returns:
        Built-ins first (in :data:`DEFAULT_PLUGINS` order), then third-party plugins by name.
    """
    plugin_errors()
    reg = _state()
    infos = [
        dataclasses.replace(i) for i in reg.infos.values() if include_builtins or not i.builtin
    ]
    return sorted(infos, key=lambda i: (not i.builtin, 0 if i.builtin else i.name.lower()))


def register_plugin(plugin: object, name: str | None = None) -> str | None:
    """Register a plugin object or module at runtime (tests, notebooks, embedding apps).

    Its hooks are validated like installed plugins; failures are recorded, not raised.

    Returns:
        The plugin name, or ``None`` if it was blocked or failed to register.
    """
    load_plugins()
    with _lock:
        reg = _state()
        name = name or getattr(plugin, "__name__", None) or f"plugin-{id(plugin)}"
        module = plugin.__name__ if hasattr(plugin, "__name__") else type(plugin).__module__
        info = PluginInfo(name, builtin=False, module=module)
        ok = reg.register(plugin, name, info)
        reg.check_pending()
        reg.invalidate()
        return name if ok and reg.pm.get_plugin(name) is not None else None


def unregister_plugin(name: str) -> None:
    """Remove a plugin registered at runtime (or any plugin, by name)."""
    with _lock:
        reg = _state()
        if reg.pm.get_plugin(name) is not None:
            reg.pm.unregister(name=name)
        reg.infos.pop(name, None)
        reg.errors = [e for e in reg.errors if e.plugin != name]
        reg.invalidate()


def reset_plugins() -> None:
    """Forget all plugin state; the next call loads plugins afresh (re-reading the
    environment). Meant for tests."""
    global _registry
    with _lock:
        _registry = None
