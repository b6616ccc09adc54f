"""The report: a markdown summary and its figures from the metrics files on disk, with a verdict per
paper claim. Every number is read from a file listed under "Sources": nothing comes from memory of
earlier runs.

    inputs = read_inputs(folders, seed)           # pipeline.report.inputs
    text, figures, claims = build(inputs, ...)    # markdown, name -> Figure, Claim rows
"""

from matplotlib.figure import Figure

from pipeline.report.claims import Claim, claim_rows
from pipeline.report.inputs import Folders, Inputs, read_inputs
from pipeline.report.main_table import main_section
from pipeline.report.markdown import label
from pipeline.report.sections import claims_section, curves_section, long_tail_section, reduced_section, robustness_section, sources_section, sweep_section
from pipeline.report.small_batch_view import claims_small_batch, small_batch_section

__all__ = ["Claim", "Folders", "Inputs", "build", "read_inputs"]


def build(inputs: Inputs, *, dataset: str, encoder: str, views: int, compare_url: str | None = None) -> tuple[str, dict[str, Figure], list[Claim]]:
    """The summary's markdown, its figures by name, and the claims.

    dataset, encoder: named in the main comparison; views: pretraining views per image, for a
    pretrain_supcon.json that does not record them (params' supcon.views); compare_url: MLflow's
    compare page of the main comparison's runs, linked under Sources.
    """
    rows = [*claim_rows(inputs), *claims_small_batch(inputs)]
    sections = [
        claims_section(rows),
        main_section(inputs, dataset=dataset, encoder=encoder, views=views),
        reduced_section(inputs, dataset),
        long_tail_section(inputs, dataset),
        small_batch_section(inputs),
        robustness_section(inputs),
        sweep_section(inputs),
        curves_section(inputs),
        sources_section(inputs, compare_url),
    ]
    head = [f"# {label(inputs.method)} vs cross-entropy: what held", "", "Built by the `report` stage from the metrics files under Sources only.", ""]
    text = "\n".join(head + [line for lines, _ in sections for line in (*lines, "")])
    return text, {name: figure for _, drawn in sections for name, figure in drawn.items()}, rows
