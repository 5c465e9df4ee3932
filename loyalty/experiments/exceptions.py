from loyalty.errors import BusinessRuleViolation, Conflict, NotFound


class ExperimentNotFound(NotFound):
    pass


class ExperimentExists(Conflict):
    """The key is another experiment's: keys are unique, as they are in the assignment hash."""

    code = "experiment_exists"
    title = "Experiment exists"


class ExperimentArmsLocked(Conflict):
    """The arms or weights of an experiment that has started cannot change: a changed weight
    or order moves members between arms (see ``assignment``) and breaks the comparison."""

    code = "experiment_arms_locked"
    title = "Experiment arms locked"


class ExperimentLocked(Conflict):
    """An experiment that has started keeps its target, eligibility, window and margin: only
    its name and hypothesis may still change."""

    code = "experiment_locked"
    title = "Experiment locked"


class ExperimentStatusConflict(Conflict):
    """A transition its status does not allow (start a non-draft, stop a non-running one)."""

    code = "experiment_status_conflict"
    title = "Experiment status conflict"


class ExperimentTargetTaken(Conflict):
    """Another running experiment tests the same rule, automation or benefit: a member in
    both would be in two arms that disagree on what they get."""

    code = "experiment_target_taken"
    title = "Experiment target taken"


class ExperimentPromoted(Conflict):
    """An experiment promotes one arm, once: a second promotion would undo the first's
    changes to the program with nothing to say which should stand."""

    code = "experiment_promoted"
    title = "Experiment promoted"


class UnknownArm(BusinessRuleViolation):
    """The arm key is not one of the experiment's arms."""

    code = "unknown_arm"
    title = "Unknown arm"
