"""Simulated annotators and the gold judge driving weeks of the loop without people
(AlpacaFarm's idea, run through Tandem's own application): `annotators` label through the
annotation services as a page would, `evaluation` measures each published version with the
gold judge, `weeks` runs the weeks (manage.py simulate), `report` writes what they showed.

`edits` and `decisions` are pure Python (no Django): what a simulated annotator would write
and choose."""
