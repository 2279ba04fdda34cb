#!/usr/bin/env python3
"""The native module and the pinned Envoy agree on the ABI's names, checked on the binaries:
every Envoy callback the module imports (`envoy_dynamic_module_callback_*`) is exported by
Envoy, and every HTTP-filter hook Envoy looks up (`envoy_dynamic_module_on_http_filter_*` and
`envoy_dynamic_module_on_program_init`, as strings in its binary) is exported by the module.

usage: check_abi.py MODULE.so ENVOY_BINARY
"""
import re
import subprocess
import sys


def symbols(path, *flags):
    out = subprocess.run(["nm", "-D", *flags, path], check=True, capture_output=True, text=True).stdout
    return {line.split()[-1] for line in out.splitlines() if line.strip()}


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    module, envoy = sys.argv[1:]
    imported = {s for s in symbols(module, "--undefined-only") if s.startswith("envoy_dynamic_module_callback_")}
    exported_by_envoy = {s for s in symbols(envoy, "--defined-only") if s.startswith("envoy_dynamic_module_callback_")}
    exported_by_module = {s for s in symbols(module, "--defined-only") if s.startswith("envoy_dynamic_module_on_")}
    with open(envoy, "rb") as f:
        looked_up = set(m.decode() for m in re.findall(
            rb"envoy_dynamic_module_on_(?:http_filter_[a-z_]+|program_init)", f.read()))
    # Hooks on the filter configuration (the filter's own callouts and streams are used
    # instead) are optional: Envoy loads a module without them.
    optional = {h for h in looked_up if h.startswith("envoy_dynamic_module_on_http_filter_config_")
                and h not in ("envoy_dynamic_module_on_http_filter_config_new",
                              "envoy_dynamic_module_on_http_filter_config_destroy")}
    missing_callbacks = sorted(imported - exported_by_envoy)
    missing_hooks = sorted(looked_up - optional - exported_by_module)
    for name in missing_callbacks:
        print(f"{module} imports {name}, which {envoy} does not export", file=sys.stderr)
    for name in missing_hooks:
        print(f"{envoy} looks up {name}, which {module} does not export", file=sys.stderr)
    if missing_callbacks or missing_hooks or not imported:
        return 1
    print(f"native ABI ok: {len(imported)} callbacks imported, all exported by Envoy; "
          f"{len(looked_up - optional)} hooks Envoy requires, all exported by the module")
    return 0


if __name__ == "__main__":
    sys.exit(main())
