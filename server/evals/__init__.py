"""Evals: labelled question sets, retrieval and answer metrics, the `docgate eval` runner.

dataset.py   the JSONL cases and the pages each expects
metrics.py   ranking and answer metrics (pure)
configs.py   the retrieval configurations compared, and one configuration's run over the cases
answers.py   every case through the answering core, reduced to outcomes
agent.py     how far an agent's reading strategies get (search, fetch_chunk, read_page)
report.py    the report of a run, reading one back, and the comparison with a baseline
runner.py    `run_eval`: all of the above over one dataset
render.py    the report as console tables
"""
