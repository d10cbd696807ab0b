import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotation.services import AnnotationError
from rlhf.models import Iteration
from rlhf.simulation.annotators import MODES, SimulationError
from rlhf.simulation.weeks import SimulationConfig, simulate


class Command(BaseCommand):
    help = (
        "Run weeks of the loop with simulated annotators and the gold judge: each week the open "
        "batch collects gold prompts (written by the annotators, or imported into its queue: "
        "--mode) labelled through the annotation services, an iteration on the train worker "
        "publishes a new policy, and the gold judge measures it on held-out prompts. Needs "
        "Celery workers on default,generate and on train. Writes report.json, report.html and "
        "each version in the Hugging Face layout to --report."
    )

    def add_arguments(self, parser):
        defaults = SimulationConfig(weeks=1, annotators=1, prompts_per_week=1, report=Path())
        parser.add_argument("--weeks", type=int, required=True)
        parser.add_argument("--annotators", type=int, required=True)
        parser.add_argument("--prompts-per-week", type=int, required=True)
        parser.add_argument("--seed", type=int, default=defaults.seed)
        parser.add_argument(
            "--algorithm", choices=Iteration.Algorithm.values, default=defaults.algorithm
        )
        parser.add_argument(
            "--mode",
            choices=MODES,
            default=defaults.mode,
            help="write: each annotator writes its prompts and labels its own pair; queue: the "
            "week's prompts are imported into the batch and the annotators claim them from the "
            "queue",
        )
        parser.add_argument(
            "--overlap",
            type=int,
            default=defaults.overlap,
            help="queue mode: annotators per imported prompt (the batch's overlap, 1 to 10)",
        )
        parser.add_argument(
            "--noise",
            type=float,
            default=defaults.noise,
            help="share of choices flipped against the gold judge (AlpacaFarm: 0.25)",
        )
        parser.add_argument(
            "--edit-rate",
            type=float,
            default=defaults.edit_rate,
            help="share of labels whose imperfect chosen response is edited into the ideal one",
        )
        parser.add_argument(
            "--risky-share", type=float, default=defaults.risky_share, help="of each week's prompts"
        )
        parser.add_argument(
            "--hyperparameters",
            default="{}",
            help="the iterations' hyper-parameters: a JSON object of stage -> fields, or a file "
            "holding one",
        )
        parser.add_argument(
            "--eval-prompts",
            type=int,
            default=defaults.eval_prompts,
            help="held-out gold prompts per version: this many harmless and as many risky",
        )
        parser.add_argument(
            "--max-new-tokens",
            type=int,
            default=defaults.max_new_tokens,
            help="the longest response, in the batches and in the evaluation",
        )
        parser.add_argument(
            "--heldout-share",
            type=float,
            default=defaults.heldout_share,
            help="of each batch's comparisons, held out for the reward models' accuracy",
        )
        parser.add_argument(
            "--cumulative",
            action="store_true",
            help="train each week on every simulated batch so far (default: that week's)",
        )
        parser.add_argument(
            "--timeout",
            type=float,
            default=defaults.timeout,
            help="seconds to wait for the workers, per wait",
        )
        parser.add_argument("--report", type=Path, default=Path("simulation-report"))

    def handle(self, **options):
        config = SimulationConfig(
            weeks=options["weeks"],
            annotators=options["annotators"],
            prompts_per_week=options["prompts_per_week"],
            report=options["report"],
            seed=options["seed"],
            algorithm=options["algorithm"],
            mode=options["mode"],
            overlap=options["overlap"],
            noise=options["noise"],
            edit_rate=options["edit_rate"],
            risky_share=options["risky_share"],
            hyperparameters=_json_object(options["hyperparameters"]),
            eval_prompts=options["eval_prompts"],
            max_new_tokens=options["max_new_tokens"],
            heldout_share=options["heldout_share"],
            cumulative=options["cumulative"],
            timeout=options["timeout"],
        )
        try:
            simulate(config, progress=self.stdout.write)
        # AnnotationError: the services refused what the configuration makes them write (a
        # --max-new-tokens that leaves a prompt no room in the model's context).
        except (SimulationError, AnnotationError) as error:
            raise CommandError(str(error)) from error
        self.stdout.write(f"report: {config.report / 'report.html'}")


def _json_object(value: str) -> dict:
    """--hyperparameters: JSON text, or the name of a file holding it."""
    text = value
    if not value.lstrip().startswith("{"):
        try:
            text = Path(value).read_text()
        except OSError as error:
            raise CommandError(f"--hyperparameters: cannot read {value}: {error}") from None
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as error:
        raise CommandError(f"--hyperparameters: not JSON: {error}") from None
    if not isinstance(parsed, dict):
        raise CommandError("--hyperparameters: must be a JSON object of stage -> fields")
    return parsed
