"""All-user candidate jobs on one machine or on Apache Spark, with the same results.

Each job is a map over centre nodes, a reduce over pairs and a top-k per
user; ``engine="local"`` runs it in this process (vectorised, in blocks of
users), ``engine="spark"`` on a Spark cluster (or Spark in local mode). See
:mod:`.runner` for the entry point, :mod:`.two_hop` and :mod:`.egoml_job`
for the jobs, :mod:`.output` for the Parquet layout and :mod:`.publish` for
serving the results. Two more jobs run on both engines with the same
results: :mod:`.sampling_job` (degree-capped subgraph samples) and
:mod:`.rank_job` (a trained pipeline's ranker over every user's candidates).
"""
