"""Data Factory: the bank's data movement pipelines, Airflow-free building blocks.

* :mod:`~demobank.data_factory.core_banking` -- the core banking source: its tables and a deterministic generator of
  realistic data (``python -m demobank.data_factory.core_banking seed``);
* :mod:`~demobank.data_factory.sources` -- connections to the databases (source, warehouse) and their Asset URIs;
  :mod:`~demobank.data_factory.assets` -- the Assets the DAGs declare as inlets and outlets;
* :mod:`~demobank.data_factory.warehouse` -- the warehouse's tables and its bulk, idempotent writes;
* :mod:`~demobank.data_factory.validate`, :mod:`~demobank.data_factory.transform` -- pandas (on Arrow) checks and
  transformations of one chunk of transactions;
* :mod:`~demobank.data_factory.transactions` -- the steps of the ``data_factory_transactions`` DAG
  (:mod:`~demobank.data_factory.pgcopy` reads PostgreSQL sources and writes ``COPY``'s binary format);
* :mod:`~demobank.data_factory.customers` -- the steps of the ``data_factory_customer_sync`` DAG;
* :mod:`~demobank.data_factory.quality` -- the data quality record in the suite's database and its read API;
* :mod:`~demobank.data_factory.reporting`, :mod:`~demobank.data_factory.report_outbox` -- run reports to Monte Carlo.
"""
