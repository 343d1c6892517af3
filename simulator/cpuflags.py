"""The host CPU flags a simulated node reports in `cpuinfo.flags` of its node status, as
/proc/cpuinfo lists them: per CPU model for the models the built-in scenarios use, else a
scenario's node `cpu_flags`, else those of the default model."""

from __future__ import annotations

_X86_BASE = ("fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse "
             "sse2 ht syscall nx pdpe1gb rdtscp lm constant_tsc rep_good nopl nonstop_tsc cpuid aperfmperf pni "
             "pclmulqdq monitor ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt aes xsave avx f16c rdrand "
             "lahf_lm abm fsgsbase bmi1 avx2 smep bmi2 erms invpcid rdseed adx smap clflushopt clwb sha_ni "
             "xsaveopt xsavec xgetbv1 xsaves arat umip pku ospke vaes vpclmulqdq rdpid")

# AMD EPYC 7313 (Zen 3): x86-64-v3, no AVX-512.
_ZEN3 = _X86_BASE + (" mmxext fxsr_opt extd_apicid cmp_legacy svm extapic cr8_legacy sse4a misalignsse "
                     "3dnowprefetch osvw ibs skinit wdt topoext perfctr_core clzero irperf xsaveerptr rdpru "
                     "wbnoinvd npt lbrv svm_lock nrip_save tsc_scale vmcb_clean decodeassists pausefilter "
                     "v_vmsave_vmload vgif v_spec_ctrl overflow_recov succor smca")
# Intel Xeon Gold 6338 (Ice Lake-SP): x86-64-v4.
_ICELAKE = _X86_BASE + (" vmx est tm2 xtpr pdcm dca tsc_deadline_timer 3dnowprefetch tpr_shadow flexpriority "
                        "ept vpid ept_ad hle rtm avx512f avx512dq avx512ifma intel_pt avx512cd avx512bw "
                        "avx512vl avx512vbmi avx512_vbmi2 gfni avx512_vnni avx512_bitalg avx512_vpopcntdq "
                        "la57 md_clear pconfig flush_l1d arch_capabilities")

DEFAULT_MODEL = "AMD EPYC 7313 16-Core Processor"
MODEL_FLAGS: dict[str, str] = {
    DEFAULT_MODEL: _ZEN3,
    "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz": _ICELAKE,
}


def model_flags(model: str, cpu_flags: str | None) -> str:
    """What `cpuinfo.flags` says for a node of `model` (its scenario `cpu_flags` first)."""
    return cpu_flags if cpu_flags is not None else MODEL_FLAGS.get(model, MODEL_FLAGS[DEFAULT_MODEL])
