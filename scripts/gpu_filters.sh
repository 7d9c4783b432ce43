# gpu_filters.sh: the GoogleTest filters of the GPU suites, sourced by
# scripts/gpu_suite.sh and the scripts/dev/ runners so that a new test case
# is picked up everywhere from one place.
# shellcheck shell=bash
HT_FILTER='*HtLayout*:*HtDispatchCombine*:HtStress.*:HtBadInput*'
# Cases that exist for the intranode direct path (registered buffers): a multi-node comm runs the
# internode path instead, so the internode pass leaves them out.
HT_DIRECT_ONLY='*_direct:*Direct*:HtBadInputRegister.*:*RegisteredOnOneRankOnly*'
# LlLinesStress drives every GPU from one process: it runs on its own (LL_STRESS_FILTER), not under mpirun.
LL_FILTER='Ll*:-LlLinesStress.*'
LL_STRESS_FILTER='LlLinesStress.*'
INTERNODE_FILTER='Internode/*:InternodeHtSequence.*'
