"""SageMaker pipeline definitions (Version 2020-12-01): parsed, checked, evaluated and advanced,
without I/O.

The definition JSON is the program. :class:`Definition` parses it into steps (the steps of a
Condition's IfSteps and ElseSteps flattened, each knowing its branch), works out every step's
dependencies (``DependsOn``, the steps its arguments refer to, its condition), and checks that
each reference can be resolved before anything runs (``_definition``). :func:`evaluate` resolves
an argument tree against a :class:`Scope`: ``Get`` (parameters, execution variables, step
properties, property files), ``Std:Join`` and ``Std:JsonGet``; :func:`decide` evaluates a
Condition step's conditions (``_expressions``). :class:`Execution` and :class:`StepRun` are what
is stored of a run (``_runs``). The engine's decisions — which steps start
(:func:`ready_steps`), a job step's outcome from its Describe answer (:func:`step_outcome`),
retries (:func:`retry_for`), caching (:func:`cached_run`), how an execution ends
(:func:`execution_outcome`) — are pure functions (``_engine``).

What a step's properties are (its job's Describe answer, say) and how a property file is read are
the caller's business: this package only walks them.
"""

from shipyard.core.pipelines._definition import (
    CACHE_KEY_ATTRIBUTES,
    EXECUTION_VARIABLES,
    JOB_EXCEPTION_TYPES,
    JOB_STEP_TYPES,
    STEP_EXCEPTION_TYPES,
    STEP_TYPES,
    VERSION,
    CacheConfig,
    Definition,
    DefinitionError,
    Parameter,
    ParameterType,
    PropertyFile,
    RetryPolicy,
    Step,
    parse_duration,
)
from shipyard.core.pipelines._engine import (
    DEFAULT_PARALLELISM,
    STEP_KINDS,
    Retry,
    StepKind,
    StepOutcome,
    cached_run,
    exception_type,
    execution_outcome,
    failures,
    ready_steps,
    retry_for,
    step_outcome,
)
from shipyard.core.pipelines._expressions import (
    CONDITION_TYPES,
    ResolutionError,
    Scope,
    decide,
    evaluate,
    parse_path,
    references,
    walk,
)
from shipyard.core.pipelines._runs import Execution, ExecutionStatus, Pipeline, StepRun, StepStatus

__all__ = [
    "CACHE_KEY_ATTRIBUTES",
    "CONDITION_TYPES",
    "DEFAULT_PARALLELISM",
    "EXECUTION_VARIABLES",
    "JOB_EXCEPTION_TYPES",
    "JOB_STEP_TYPES",
    "STEP_EXCEPTION_TYPES",
    "STEP_KINDS",
    "STEP_TYPES",
    "VERSION",
    "CacheConfig",
    "Definition",
    "DefinitionError",
    "Execution",
    "ExecutionStatus",
    "Parameter",
    "ParameterType",
    "Pipeline",
    "PropertyFile",
    "ResolutionError",
    "Retry",
    "RetryPolicy",
    "Scope",
    "Step",
    "StepKind",
    "StepOutcome",
    "StepRun",
    "StepStatus",
    "cached_run",
    "decide",
    "evaluate",
    "exception_type",
    "execution_outcome",
    "failures",
    "parse_duration",
    "parse_path",
    "ready_steps",
    "references",
    "retry_for",
    "step_outcome",
    "walk",
]
