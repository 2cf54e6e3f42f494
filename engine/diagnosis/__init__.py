"""The parts of swiftdeck's failure diagnosis (engine.diagnose is the entry point and keeps the public API):

    evidence   console text -> clean lines, tracebacks, bare error lines, the run's args
    catalog    ms-swift's own error messages (3.x and 4.x) and those of the tools around it -> a kind
    tools      torchrun's failure summary and the signals that end a process
    kinds      the kinds found by message: invalid_argument, missing_package, model_type/template_unknown,
               reward_function_not_found, vllm_adapter_failed, deepspeed_error
    memory     CUDA/host OOM and a full disk, with remedies from the run's own arguments (sft and rlhf)
    result     the Diagnosis itself

docs/DIAGNOSIS.md holds the table message -> kind -> versions; tests/test_diagnose_catalog.py checks every row of it
against these rules.
"""
