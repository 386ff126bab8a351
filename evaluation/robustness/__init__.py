"""Router robustness benchmark: a categorized prompt set (DSC, arXiv 2504.07113), meaning-
preserving perturbations, confounder gadgets (arXiv 2501.01818) and the prefix defence
(routers/defence.py). Entry point: `evaluation.robustness.suite.run_robustness`."""

from evaluation.robustness.perturb import PERTURBATIONS, perturb, perturb_all

__all__ = ["PERTURBATIONS", "perturb", "perturb_all"]
