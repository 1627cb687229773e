"""Open searches: Optuna (TPE or random) through Ray Tune's OptunaSearch, with
ASHA early stopping, over a persistent study (a second run continues it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

import optuna
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from detector.config import ConfigError
from optuna.storages._heartbeat import is_heartbeat_enabled

from sweeps.ledger import EXPIRY_S, HEARTBEAT_S
from sweeps.redact import conceal, redact, reveal
from sweeps.spec import SearchSpec
from sweeps.trainable import FINAL_FLAG

EARLY_STOPPED_ATTR = "early_stopped"  # Optuna user attribute of a trial ASHA stopped
BASE_HASH_ATTR = "base_config_hash"  # Optuna user attribute of a study: the base config its trials ran on
OWNER_ATTR = "sweep_owner"  # Optuna user attribute of a trial: the lease token of the driver that asked for it


class EvalOnlyOptunaSearch(OptunaSearch):
    """OptunaSearch fed only the evaluation reports: training reports carry
    losses but no AP, and OptunaSearch would fail looking the metric up."""

    owner = ""  # this driver's lease token (sweeps/ledger.py), set on each trial it asks for

    def suggest(self, trial_id: str) -> Optional[dict]:
        """Ray's suggest (an Optuna ask), then the new trial's first heartbeat: an RDB study
        never holds a live trial without one (Optuna's own heartbeats come only with
        Study.optimize, which Tune does not use; the ledger's thread renews them, `heartbeat`)."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Heartbeat of storage")
            config = super().suggest(trial_id)
        self._beat(trial_id)
        trial = self._ot_trials.get(trial_id)
        if trial is not None and self.owner and OWNER_ATTR not in trial.user_attrs:
            trial.set_user_attr(OWNER_ATTR, self.owner)
        return config

    def heartbeat(self) -> None:
        """Renew the Optuna heartbeat of each trial this search has open."""
        for trial_id in list(self._ot_trials):
            if trial_id not in self._completed_trials:
                self._beat(trial_id)

    def _beat(self, trial_id: str) -> None:
        storage = self._ot_study._storage
        trial = self._ot_trials.get(trial_id)
        if trial is not None and is_heartbeat_enabled(storage):
            storage.record_heartbeat(trial._trial_id)

    def fail_open_trials(self) -> list[str]:
        """Mark FAIL the trials this search asked for and never finished (a Ctrl-C, a stopped
        sweep): a driver that ends leaves none of its own RUNNING in the study, where the next
        run would otherwise wait for their heartbeat to expire. Returns their Tune ids."""
        open_ids = [trial_id for trial_id in list(self._ot_trials) if trial_id not in self._completed_trials]
        for trial_id in open_ids:
            self._ot_study.tell(self._ot_trials[trial_id], state=optuna.trial.TrialState.FAIL)
            self._completed_trials.add(trial_id)
        return open_ids

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if self.metric in result:
            super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: Optional[dict] = None, error: bool = False) -> None:
        """A trial ASHA stopped ends without the final report: PRUNED in the
        study (Optuna keeps its last evaluation as an intermediate value), not
        COMPLETE with a value from fewer iterations."""
        stopped = bool(result) and not error and FINAL_FLAG not in result
        if not stopped or trial_id in self._completed_trials:
            super().on_trial_complete(trial_id, result, error)
            return
        ot_trial = self._ot_trials[trial_id]
        ot_trial.set_user_attr(EARLY_STOPPED_ATTR, True)
        self._ot_study.tell(ot_trial, state=optuna.trial.TrialState.PRUNED)
        self._completed_trials.add(trial_id)


def study_name(spec: SearchSpec, name: str, profile: str) -> str:
    """sweep.study_name, or <sweep>-<profile> (one study per profile by default)."""
    return spec.study_name or f"{name}-{profile}"


class ConcealedRDBStorage(optuna.storages.RDBStorage):
    """Optuna's RDB storage, pickled without the password of its URL: Tune pickles
    the searcher (and so its storage) into storage_path. Unpickled in this
    process it connects again with the original (sweeps/redact.py)."""

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["url"] = conceal(state["url"])
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__({**state, "url": reveal(state["url"])})


def optuna_storage(storage: str) -> optuna.storages.BaseStorage:
    """A journal file for a plain path (safe for several processes), else an RDB URL with
    Optuna's trial heartbeats on: a RUNNING trial is stale only once its owner stopped
    renewing it (sweeps/ledger.py's thread renews it with the sweep's lease)."""
    if "://" in storage:
        with _quiet_experimental():
            return ConcealedRDBStorage(storage, heartbeat_interval=int(HEARTBEAT_S), grace_period=int(EXPIRY_S))
    from optuna.storages.journal import JournalFileBackend

    path = Path(storage).expanduser().resolve()
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


@contextmanager
def _quiet_experimental() -> Iterator[None]:
    """Optuna marks its heartbeat API experimental (since 2.9) with a warning per use; the
    terminal is for one-line messages, and tests/test_search_resume.py pins what we rely on."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def check_study_base(spec: SearchSpec, name: str, profile: str, base_hash: str) -> None:
    """A study holds the trials of one base config: a search with another one (say
    train.lr=0.02) would mix incomparable values into the sampler's model and fail
    the other search's running trials as stale. One line, before Ray starts."""
    study = study_name(spec, name, profile)
    try:
        held = optuna.load_study(study_name=study, storage=optuna_storage(spec.storage)).user_attrs.get(BASE_HASH_ATTR)
    except KeyError:  # no such study yet: this search creates it
        return
    if held is not None and held != base_hash:
        raise ConfigError(f"study '{study}' in {describe_storage(spec)} holds trials of another base config "
                          f"(hash {held}, this one {base_hash}): run with that config to continue it, "
                          "or name a study of its own with sweep.study_name=...")


def make_searcher(spec: SearchSpec, name: str, profile: str, base_seed: int,
                  base_hash: str, token: str = "",
                  dead_owners: frozenset[str] = frozenset()) -> tuple[EvalOnlyOptunaSearch, int]:
    """The searcher over the persistent study (marked with the base config it runs on),
    and how many trials the study held before. `token`: this driver's lease token;
    `dead_owners`: tokens of drivers known dead (their leases were taken over)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("optuna").setLevel(logging.WARNING)
    storage = optuna_storage(spec.storage)
    name = study_name(spec, name, profile)
    direction = "maximize" if spec.mode == "max" else "minimize"
    study = optuna.create_study(study_name=name, storage=storage, load_if_exists=True, direction=direction)
    if BASE_HASH_ATTR not in study.user_attrs:
        study.set_user_attr(BASE_HASH_ATTR, base_hash)
    fail_stale_trials(study, dead_owners)
    before = len(study.trials)
    seed = sampler_seed(base_seed, before, token, live=bool(running_trials(study)))
    sampler = (optuna.samplers.TPESampler(seed=seed) if spec.sampler == "tpe"
               else optuna.samplers.RandomSampler(seed=seed))
    searcher = EvalOnlyOptunaSearch(space=optuna_space(spec), metric=spec.metric, mode=spec.mode,
                                    sampler=sampler, study_name=name, storage=storage)
    searcher.owner = token
    return searcher, before


def sampler_seed(base_seed: int, before: int, token: str, live: bool) -> int:
    """Seeded, but never with the same seed twice for one study: a second run would
    otherwise propose the first run's random start-up points again. Alone on the study
    (the ledger's study lease normally sees to it) the seed is base_seed + trials
    before, reproducible; beside a live search (its trials still RUNNING) this
    driver's lease token is mixed in, so two searches never propose alike."""
    if not live:
        return base_seed + before
    digest = hashlib.sha256(f"{base_seed}:{before}:{token}".encode()).hexdigest()
    return int(digest[:8], 16)


def running_trials(study: optuna.Study) -> list[int]:
    """Numbers of the study's RUNNING trials."""
    return [trial.number for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))]


def fail_stale_trials(study: optuna.Study, dead_owners: frozenset[str] | set[str] = frozenset()) -> list[int]:
    """Mark FAIL the RUNNING trials whose owner is gone, so the study's counts are
    right and the sampler does not wait on them; returns their numbers.

    An RDB study: those whose Optuna heartbeat expired (optuna.storages.fail_stale_trials),
    and at once those of `dead_owners` (a driver killed on this host a moment ago: its
    heartbeat has not expired yet, but its lease was taken over); a live driver's trials,
    on any host, are left alone. A journal file (no heartbeats in Optuna 5.1): every
    RUNNING trial, which is safe because this driver holds the study's lease
    (sweeps/ledger.py), so no other live driver of it exists."""
    running = running_trials(study)
    if is_heartbeat_enabled(study._storage):
        with _quiet_experimental():
            optuna.storages.fail_stale_trials(study)
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            if trial.user_attrs.get(OWNER_ATTR) in dead_owners:
                study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        still = set(running_trials(study))
        return [number for number in running if number not in still]
    for number in running:
        study.tell(number, state=optuna.trial.TrialState.FAIL)
    return running


def make_scheduler(spec: SearchSpec, iterations: int) -> ASHAScheduler:
    """ASHA on the detector's iteration; grace_period counts evaluations.

    ASHA decides on reports that carry the metric. A trial's evaluation at its
    last iteration is not forwarded (sweeps/trainable.py): its final result
    repeats it, so a rung at the last iteration only ever sees finished trials."""
    grace = min(int(spec.asha["grace_period"]) * int(spec.eval_every), iterations)
    return ASHAScheduler(time_attr="iteration", metric=spec.metric, mode=spec.mode, max_t=iterations,
                         grace_period=grace, reduction_factor=spec.asha["reduction_factor"],
                         stop_last_trials=False)


def study_trial_count(spec: SearchSpec, name: str, profile: str) -> int:
    """Trials the persistent study holds now (all states)."""
    study = optuna.load_study(study_name=study_name(spec, name, profile), storage=optuna_storage(spec.storage))
    return len(study.trials)


def describe_storage(spec: SearchSpec) -> str:
    """Where the study lives, for the final summary."""
    return redact(spec.storage) if "://" in spec.storage else str(Path(spec.storage).expanduser().resolve())



def optuna_space(spec: SearchSpec) -> dict[str, Any]:
    """Optuna distributions of `sweep.space`. Optuna's categorical choices
    must be scalars, so list choices (aspect ratios) travel as JSON text
    (`SweepPlan.search_cell` decodes them)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    space: dict[str, Any] = {}
    for name, param in spec.space.items():
        log = bool(param.get("log", False))
        if param["type"] == "float":
            space[name] = FloatDistribution(param["low"], param["high"], log=log)
        elif param["type"] == "int":
            space[name] = IntDistribution(param["low"], param["high"], log=log)
        else:
            space[name] = CategoricalDistribution([_encode_choice(c) for c in param["choices"]])
    return space


def _encode_choice(choice: Any) -> Any:
    return json.dumps(choice) if isinstance(choice, (list, dict)) else choice
