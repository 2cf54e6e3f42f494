"""The parts of swiftdeck's failure diagnosis (engine.diagnose is the entry point and keeps the public API):

    evidence   console text -> clean lines, tracebacks, bare error lines, the run's args
    catalog    ms-swift's own error messages (3.x and 4.x) and those of the tools around it -> a kind
    tools      torchrun's failure summary and the signals that end a process
    remedies   what each kind means and what to do about it

docs/DIAGNOSIS.md holds the table message -> kind -> versions; tests/test_diagnose_catalog.py checks every row of it
against these rules.
"""
