# ruff: noqa: PLC0415 - pydantic, yaml and the rest of kubedag are imported inside methods (below)
"""`Pipeline`: write a pipeline in Python and get the `kubedag.api` models the CRDs come from.

A Pipeline is a draft: `add_step`, `task`, `connect` and `override_step` record stage fields
(friendly values converted, see `kubedag.sdk.friendly`), and `build()` turns them into an
`api.PipelineSpec`, where the API models do all the checking. There is no second object
model: every stage becomes exactly one `api.Stage`.

Why the imports inside methods: a stage's pod imports the module that defines the pipeline
(to find a `@p.task` function), and the worker image has no pydantic, yaml, kubernetes or the
rest of kubedag. So creating a Pipeline and decorating functions must need the standard library
only; everything that builds, checks, serialises or submits loads its dependencies when called.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, overload

from kubedag import contract
from kubedag.sdk import friendly
from kubedag.sdk.errors import PipelineDefinitionError
from kubedag.sdk.functions import mark_inputs, processor_reference, upstream_parameters
from kubedag.sdk.report import Report

if TYPE_CHECKING:
    from kubedag import api
    from kubedag.client import Client, RunHandle
    from kubedag.core.estimate import Estimate
    from kubedag.core.runview import RunResult

F = TypeVar("F", bound=Callable[..., Any])

DESCRIPTION_ANNOTATION = "kubedag.io/description"

# add_step's friendly arguments and the Stage field each one sets.
_RENAMED = {"timeout": "timeout_seconds"}


class Step:
    """A handle on one stage of a Pipeline: its name, and shortcuts to wire or change it.

    The stage's fields live in the pipeline (`override_step` changes them); a Step is what
    `add_step` returns so that `b.after(a)` reads like the graph.
    """

    def __init__(self, pipeline: Pipeline, name: str, *, is_finally: bool = False) -> None:
        self.pipeline = pipeline
        self.name = name
        self.is_finally = is_finally

    @property
    def fields(self) -> dict[str, Any]:
        """The stage's fields as recorded (snake_case names, friendly values converted)."""
        return self.pipeline._fields_of(self.name)

    @property
    def depends_on(self) -> tuple[str, ...]:
        return tuple(self.fields.get("depends_on") or ())

    def after(self, *upstream: str | Step) -> Step:
        """Make this step depend on `upstream` (added to its dependsOn); returns self."""
        for step in upstream:
            self.pipeline.connect(step, self)
        return self

    def set(self, **fields: Any) -> Step:
        """`override_step(self.name, **fields)`; returns self."""
        self.pipeline.override_step(self.name, **fields)
        return self

    def to_model(self) -> api.Stage:
        """The `api.Stage` this step builds (in the context of the whole pipeline)."""
        spec = self.pipeline.build()
        return next(s for s in spec.all_stages() if s.name == self.name)

    def __repr__(self) -> str:
        kind = "finally step" if self.is_finally else "step"
        return f"<{kind} {self.name!r} of pipeline {self.pipeline.name!r}>"


class Pipeline:
    """A pipeline written in Python; `build()` gives the `api.PipelineSpec` the CRD takes.

    `params` is a list of `api.ParamSpec` (or dicts), or a mapping from name to either a Python
    type (a required parameter of that type: str, int, float, bool, list, dict) or a value (a
    parameter with that default, typed like the value): `{"files": list, "language": "en"}`.
    `image` is the worker image of processor stages (`spec.defaults.image`) and the image of
    command stages that give none. Other keyword arguments are PipelineSpec fields
    (`max_parallel_stages=4`, `timeout_seconds=3600`, `defaults={...}`).
    """

    def __init__(
        self,
        name: str,
        *,
        image: str | None = None,
        params: Sequence[api.ParamSpec | Mapping[str, Any]] | Mapping[str, Any] | None = None,
        namespace: str | None = None,
        description: str | None = None,
        **spec_fields: Any,
    ) -> None:
        self.name = name
        self.namespace = namespace
        self.description = description
        self._image = image
        self._params = friendly.param_specs(params) if params is not None else []
        self._spec_fields = dict(spec_fields)
        self._metadata: dict[str, Any] = {}  # labels, annotations: kept from a loaded manifest
        self._stages: dict[str, dict[str, Any]] = {}
        self._finally: dict[str, dict[str, Any]] = {}

    # --- writing ---------------------------------------------------------------------------

    @property
    def image(self) -> str | None:
        """The pipeline's worker image: the `image` argument, else `spec.defaults.image`."""
        if self._image is not None:
            return self._image
        defaults = self._spec_fields.get("defaults")
        image = defaults.get("image") if isinstance(defaults, Mapping) else getattr(
            defaults, "image", None)
        return image if isinstance(image, str) else None

    @property
    def steps(self) -> list[Step]:
        """Main steps then finally steps, in the order they were added."""
        return [*(Step(self, n) for n in self._stages),
                *(Step(self, n, is_finally=True) for n in self._finally)]

    def step(self, name: str) -> Step:
        """The handle of an existing step (KeyError naming the known steps otherwise)."""
        if name in self._stages:
            return Step(self, name)
        if name in self._finally:
            return Step(self, name, is_finally=True)
        raise KeyError(f"pipeline {self.name!r} has no step {name!r}; it has: "
                       f"{', '.join([*self._stages, *self._finally]) or 'none'}")

    def add_step(
        self,
        name: str,
        *,
        processor: str | Callable[..., Any] | None = None,
        image: str | None = None,
        command: Sequence[str] | None = None,
        args: Sequence[str] | None = None,
        depends_on: Iterable[str | Step] = (),
        resources: api.Resources | Mapping[str, Any] | None = None,
        retry: api.RetryPolicy | int | Mapping[str, Any] | None = None,
        when: str | None = None,
        fan_out: api.FanOut | Sequence[Any] | str | Mapping[str, Any] | None = None,
        critical: bool = True,
        timeout: friendly.Seconds | None = None,
        env: Mapping[str, str] | Sequence[api.EnvVar | Mapping[str, Any]] | None = None,
        outputs: Mapping[str, str] | Sequence[str | api.OutputSpec | Mapping[str, Any]]
        | None = None,
        estimated_seconds: friendly.Seconds | None = None,
        cache: bool | api.StageCache | Mapping[str, Any] | None = None,
        **stage_fields: Any,
    ) -> Step:
        """Add a stage. Run a `processor` ("package.module:function" or a module-level function)
        in the worker image, or an `image` with an optional `command` and `args`.

        Friendly values: `retry=3` (three retries), `timeout=600` or a timedelta (seconds of one
        attempt: `timeoutSeconds`), `fan_out=[...items]` or `"$(params.files)"`,
        `env={"NAME": "value"}`, `outputs=["pages"]`, `resources={"cpu": "1", "gpu": 1}`,
        `cache=True` or `cache={"max_age": "7d", "version": "2"}` (reuse its result). Any
        other Stage field by name (`node_selector=...`, `priority=5`, `type="validator"`).
        A command without an image runs in the pipeline's `image`.
        """
        given = {
            "processor": processor, "image": image, "command": command, "args": args,
            "depends_on": list(depends_on) or None, "resources": resources, "retry": retry,
            "when": when, "fan_out": fan_out, "critical": None if critical else False,
            "timeout": timeout, "env": env, "outputs": outputs,
            "estimated_seconds": estimated_seconds,
            "cache": {"enabled": cache} if isinstance(cache, bool) else cache, **stage_fields,
        }
        return self._add(name, {k: v for k, v in given.items() if v is not None},
                         is_finally=False)

    def finally_step(self, name: str, **fields: Any) -> Step:
        """Add a stage that runs once every main stage is done, whatever happened (clean-up,
        notification); same arguments as `add_step`."""
        return self._add(name, {k: v for k, v in fields.items() if v is not None},
                         is_finally=True)

    @overload
    def task(self, name: F, /) -> F: ...

    @overload
    def task(
        self, name: str | None = None, *, depends_on: Iterable[str | Step] = (), **fields: Any
    ) -> Callable[[F], F]: ...

    def task(
        self, name: str | F | None = None, *, depends_on: Iterable[str | Step] = (),
        **fields: Any,
    ) -> F | Callable[[F], F]:
        """Decorate a module-level `def step(ctx, upstream_a, ...) -> dict` as a stage.

        The stage runs the function in the worker image (`processor="module:function"`). Each
        parameter after the context receives the outputs of the upstream stage of that name
        ('_' for '-') and makes it a dependency; the returned dict is the stage's outputs. The
        stage name defaults to the function's ('_' → '-'). The function is returned unchanged.
        """
        if callable(name):
            return self.task()(name)

        def register(function: F) -> F:
            step = name or function.__name__.replace("_", "-")
            self.add_step(step, processor=function, depends_on=depends_on, **fields)
            return function

        return register

    def connect(self, upstream: str | Step, downstream: str | Step) -> None:
        """Make `downstream` depend on `upstream`."""
        up, down = _name_of(upstream), _name_of(downstream)
        fields = self._fields_of(down)
        depends_on = list(fields.get("depends_on") or [])
        if up not in depends_on:
            fields["depends_on"] = [*depends_on, up]

    def override_step(self, name: str, /, **fields: Any) -> None:
        """Change fields of an existing step (same arguments as `add_step`; templates use it).

        A field set to None goes back to its default: `override_step("ocr", retry=None)`.
        """
        current = self._fields_of(name)
        if fields.get("name", name) != name:
            raise PipelineDefinitionError(f"step {name!r}: a step cannot be renamed")
        for key, value in self._convert(name, fields).items():
            if value is None:
                current.pop(key, None)
            else:
                current[key] = value

    def _add(self, name: str, given: Mapping[str, Any], *, is_finally: bool) -> Step:
        if name in self._stages or name in self._finally:
            where = "finally steps" if name in self._finally else "steps"
            raise PipelineDefinitionError(
                f"step {name!r} is already defined (in the {where} of pipeline {self.name!r}); "
                "step names are unique, finally steps included"
            )
        fields = {"name": name, **self._convert(name, given)}
        if "command" in fields and "image" not in fields and self.image is not None:
            fields["image"] = self.image
        (self._finally if is_finally else self._stages)[name] = fields
        return Step(self, name, is_finally=is_finally)

    def _convert(self, step: str, given: Mapping[str, Any]) -> dict[str, Any]:
        """Friendly values → Stage fields (None kept: it means "unset" to override_step)."""
        fields: dict[str, Any] = {}
        extra_dependencies: list[str] = []
        for key, value in given.items():
            if value is None:
                fields[_RENAMED.get(key, key)] = None
            elif key == "processor" and callable(value):
                fields["processor"] = processor_reference(value, step=step)
                inputs = upstream_parameters(value, step=step)
                mark_inputs(value, inputs)
                extra_dependencies += inputs.values()
            elif key in ("command", "args"):
                fields[key] = friendly.string_list(value, step=step, field=key)
            elif key == "depends_on":
                fields[key] = _unique([_name_of(d) for d in value])
            elif key in ("timeout", "timeout_seconds", "estimated_seconds"):
                fields[_RENAMED.get(key, key)] = friendly.seconds(value, step=step, field=key)
            elif key == "retry":
                fields[key] = friendly.retry_policy(value)
            elif key == "fan_out":
                fields[key] = friendly.fan_out(value)
            elif key == "env":
                fields[key] = friendly.env_vars(value)
            elif key == "outputs":
                fields[key] = friendly.output_specs(value)
            elif key == "fallback" and isinstance(value, Mapping):
                fields[key], inputs_of_fallback = self._fallback(step, value)
                extra_dependencies += inputs_of_fallback
            else:
                fields[key] = value
        if extra_dependencies:
            fields["depends_on"] = _unique([*(fields.get("depends_on") or []),
                                            *extra_dependencies])
        return fields

    def _fallback(self, step: str, given: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """`fallback={"processor": alt, "retry": 2, "timeout": 60}`: the same friendly values
        as add_step's ways to run a stage. What the fallback's processor function reads from
        upstream steps (or a `depends_on` given with it) becomes the stage's dependencies:
        the fallback runs in the stage's place, after the same stages."""
        fields = {key: value for key, value in self._convert(step, given).items()
                  if value is not None}
        dependencies = list(fields.pop("depends_on", None) or [])
        if "command" in fields and "image" not in fields and self.image is not None:
            fields["image"] = self.image
        return fields, dependencies

    def _fields_of(self, name: str | Step) -> dict[str, Any]:
        key = _name_of(name)
        fields = self._stages.get(key) or self._finally.get(key)
        if fields is None:
            self.step(key)  # raises the KeyError that lists the steps
        assert fields is not None
        return fields

    # --- the model -------------------------------------------------------------------------

    def raw_spec(self) -> dict[str, Any]:
        """The spec as the manifest spells it (camelCase, plain JSON values), before checking."""
        from kubedag.sdk import manifest

        return manifest.raw_spec(
            params=self._params, stages=list(self._stages.values()),
            finals=list(self._finally.values()), spec_fields=self._spec_fields,
            image=self._image,
        )

    def build(self) -> api.PipelineSpec:
        """The `api.PipelineSpec`; PipelineDefinitionError naming each bad step and field.

        Only what the model itself checks fails here; `validate()` adds the operator's graph,
        CEL and reference checks.
        """
        from kubedag.sdk import manifest

        return manifest.build_spec(self.raw_spec(), self.name)

    def metadata(self) -> dict[str, Any]:
        """The Pipeline object's metadata: name, namespace (if set), labels, annotations."""
        metadata: dict[str, Any] = {"name": self.name}
        if self.namespace:
            metadata["namespace"] = self.namespace
        metadata.update(self._metadata)
        if self.description:
            annotations = dict(metadata.get("annotations") or {})
            annotations[DESCRIPTION_ANNOTATION] = self.description
            metadata["annotations"] = annotations
        return metadata

    def to_model(self) -> api.Pipeline:
        """The `api.Pipeline` object (`kubectl apply` takes its `to_yaml()`)."""
        from kubedag import api

        return api.Pipeline(metadata=self.metadata(), spec=self.build())

    def to_document(self) -> dict[str, Any]:
        """The manifest as a dict: apiVersion, kind, metadata, spec (see `manifest.document`)."""
        from kubedag.sdk import manifest

        return manifest.document(self.to_model())

    def to_yaml(self) -> str:
        """Block-style YAML for `kubectl apply -f`: keys in the models' field order, values
        equal to their defaults left out (see `kubedag.sdk.manifest`)."""
        from kubedag.sdk import manifest

        return manifest.dump_yaml(self.to_document())

    def to_json(self) -> str:
        """The same document as `to_yaml()`, as indented JSON."""
        from kubedag.sdk import manifest

        return manifest.dump_json(self.to_document())

    @classmethod
    def from_yaml(cls, text_or_path: str | Path) -> Pipeline:
        """Read a Pipeline manifest, or a PipelineRun with an inline `pipelineSpec` (its name
        is the run's `kubedag.io/pipeline` label, else its name or generateName; the run's own
        settings such as param values are not part of a pipeline and are left behind)."""
        from kubedag.sdk import manifest

        return cls.from_document(manifest.load_yaml(text_or_path))

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> Pipeline:
        """`from_yaml` for JSON (JSON is YAML, but this says what is expected)."""
        from kubedag.sdk import manifest

        return cls.from_document(manifest.load_json(text_or_path))

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> Pipeline:
        """A Pipeline or PipelineRun manifest already parsed into a dict."""
        from kubedag.sdk import manifest

        return cls.from_model(manifest.parse_document(document))

    @classmethod
    def from_model(cls, model: api.Pipeline | api.PipelineRun) -> Pipeline:
        """A Pipeline whose `to_model()` equals `model` (for a PipelineRun: its inline spec)."""
        from kubedag.sdk import manifest

        name, metadata, spec = manifest.pipeline_parts(model)
        namespace = metadata.pop("namespace", None)
        annotations = dict(metadata.get("annotations") or {})
        description = annotations.pop(DESCRIPTION_ANNOTATION, None)
        if "annotations" in metadata:
            metadata["annotations"] = annotations
            if not annotations:
                del metadata["annotations"]
        spec_fields = {key: getattr(spec, key) for key in spec.model_fields_set
                       if key not in ("params", "stages", "finally_")}
        pipeline = cls(name, namespace=namespace, description=description,
                       params=list(spec.params) if spec.params is not None else None,
                       **spec_fields)
        pipeline._metadata = metadata
        for group, stages in ((pipeline._stages, spec.stages),
                              (pipeline._finally, spec.finally_ or [])):
            for stage in stages:
                group[stage.name] = {key: getattr(stage, key) for key in stage.model_fields_set}
        return pipeline

    # --- checking --------------------------------------------------------------------------

    def validate(self, *, client: Client | None = None) -> Report:
        """Every problem the operator would report, offline: the CRD schema and its rules (as
        the API models check them), the DAG (duplicates, unknown dependencies, cycles with
        their path), `when` CEL expressions, `$(...)` references and params.

        With a client, a pipeline that passes offline is also created as a server-side dry run
        (nothing is stored), so the CRD installed on that cluster has its say too.
        """
        from kubedag.sdk import manifest

        report = manifest.validate_document(self._raw_document())
        if client is None or not report.ok:
            return report
        from kubedag.sdk import cluster

        return Report(report.pipeline, cluster.server_errors(client, self.to_document()),
                      report.step_names)

    def estimate(self, *, client: Client | None = None) -> Estimate:
        """Critical-path time and peak resources; with a client, also past runs' median
        durations and the stages no node can hold (see `kubedag.core.estimate`)."""
        from kubedag.core.estimate import estimate

        spec = self.build()
        if client is None:
            return estimate(spec)
        from kubedag.sdk import cluster

        return estimate(spec, history=cluster.stage_durations(client, self.name),
                        nodes=cluster.node_capacities(client))

    # --- running ---------------------------------------------------------------------------

    def to_run(
        self, params: Mapping[str, Any] | None = None, *, name: str | None = None,
        namespace: str | None = None,
    ) -> api.PipelineRun:
        """A PipelineRun of this pipeline (inline `pipelineSpec`), labelled
        `kubedag.io/pipeline: <name>` and named `<name>-<random>` unless `name` is given.

        Validates first (PipelineDefinitionError listing every problem): a run with a bad
        spec or bad params fails only after the round trip to the cluster otherwise.
        """
        from kubedag.sdk import manifest

        self.validate().raise_for_errors()
        return manifest.run_of(self.build(), pipeline=self.name, params=params, name=name,
                               namespace=namespace or self.namespace)

    def submit(
        self, params: Mapping[str, Any] | None = None, *, client: Client | None = None,
        namespace: str | None = None, name: str | None = None,
    ) -> RunHandle:
        """Create a PipelineRun on the cluster of the kubeconfig (or `client`); returns its
        handle (`watch()`, `wait()`, `cancel()`...)."""
        from kubedag.client import Client

        client = client or Client(namespace=namespace or self.namespace)
        return client.create_run(self.to_run(params, name=name, namespace=namespace))

    def run_local(
        self, params: Mapping[str, Any] | None = None, *, workspace: Path | str | None = None,
        progress: bool | None = None,
    ) -> RunResult:
        """Run on this machine with local worker processes (`kubedag.local`); the result has
        the same shape as a cluster run's."""
        from kubedag.sdk import localrun

        return localrun.run(self.to_run(params, name=f"{self.name}-local"), workspace=workspace,
                         progress=progress)

    def _raw_document(self) -> dict[str, Any]:
        return {"apiVersion": f"{contract.API_GROUP}/{contract.API_VERSION}",
                "kind": "Pipeline", "metadata": self.metadata(), "spec": self.raw_spec()}

    def __repr__(self) -> str:
        return (f"<Pipeline {self.name!r}: {len(self._stages)} step(s), "
                f"{len(self._finally)} finally>")


def _name_of(step: str | Step) -> str:
    return step.name if isinstance(step, Step) else step


def _unique(names: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(names))
