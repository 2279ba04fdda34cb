#!/usr/bin/env python3
"""Package the filter as an OCI image layout directory, from files in this repository only.

The image has one layer holding `plugin.wasm`: the "compat" Wasm image variant istio-agent pulls
for an `oci://` Wasm module (deploy/istio/envoyfilter.yaml), and an image Kubernetes can mount as
an `image` volume (deploy/kubernetes/sidecar.yaml). Nothing is pushed: copy the layout to a registry with any OCI tool, e.g.

    skopeo copy oci:dist/oci:0.1.0 docker://registry.example.com/mcp-policy-filter:0.1.0

Usage: build_layout.py WASM OUT_DIR TAG          (build)
       build_layout.py --verify WASM OUT_DIR TAG (re-read the layout and check every digest)

The build is reproducible: fixed timestamps and ownership, so the same .wasm gives the same
digests.
"""

import gzip
import hashlib
import io
import json
import os
import sys
import tarfile

LAYER_MEDIA = "application/vnd.oci.image.layer.v1.tar+gzip"
CONFIG_MEDIA = "application/vnd.oci.image.config.v1+json"
MANIFEST_MEDIA = "application/vnd.oci.image.manifest.v1+json"
INDEX_MEDIA = "application/vnd.oci.image.index.v1+json"
WASM_NAME = "plugin.wasm"


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_of(wasm: bytes) -> tuple[bytes, bytes]:
    """The gzipped tar layer and the uncompressed tar (whose digest is the config's diff_id)."""
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(WASM_NAME)
        info.size = len(wasm)
        info.mode = 0o444
        info.mtime = 0
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        tar.addfile(info, io.BytesIO(wasm))
    raw = tar_bytes.getvalue()
    return gzip.compress(raw, mtime=0), raw


def canonical(document: dict) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def build(wasm: bytes, tag: str) -> dict[str, bytes]:
    """Every file of the layout, by path relative to the layout root."""
    layer, diff = layer_of(wasm)
    config = canonical(
        {
            "architecture": "wasm",
            "os": "wasip1",
            "rootfs": {"type": "layers", "diff_ids": [digest(diff)]},
            "config": {"Labels": {"org.opencontainers.image.title": "mcp-policy-filter"}},
        }
    )
    manifest = canonical(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA,
            "config": {"mediaType": CONFIG_MEDIA, "digest": digest(config), "size": len(config)},
            "layers": [
                {
                    "mediaType": LAYER_MEDIA,
                    "digest": digest(layer),
                    "size": len(layer),
                    "annotations": {"org.opencontainers.image.title": WASM_NAME},
                }
            ],
            "annotations": {
                "org.opencontainers.image.title": "mcp-policy-filter",
                "org.opencontainers.image.version": tag,
                "org.opencontainers.image.description": "Policy firewall for MCP tool calls (proxy-wasm for Envoy)",
            },
        }
    )
    index = canonical(
        {
            "schemaVersion": 2,
            "mediaType": INDEX_MEDIA,
            "manifests": [
                {
                    "mediaType": MANIFEST_MEDIA,
                    "digest": digest(manifest),
                    "size": len(manifest),
                    "annotations": {"org.opencontainers.image.ref.name": tag},
                }
            ],
        }
    )
    files = {"oci-layout": canonical({"imageLayoutVersion": "1.0.0"}), "index.json": index}
    for blob in (layer, config, manifest):
        files["blobs/sha256/" + digest(blob).split(":", 1)[1]] = blob
    return files


def write(files: dict[str, bytes], out: str) -> None:
    for path, data in files.items():
        full = os.path.join(out, path)
        os.makedirs(os.path.dirname(full) or out, exist_ok=True)
        with open(full, "wb") as f:
            f.write(data)


def verify(wasm: bytes, out: str, tag: str) -> list[str]:
    """Problems found reading the layout back as a registry client would."""
    problems = []

    def blob(descriptor: dict) -> bytes:
        path = os.path.join(out, "blobs", *descriptor["digest"].split(":", 1))
        with open(path, "rb") as f:
            data = f.read()
        if digest(data) != descriptor["digest"] or len(data) != descriptor["size"]:
            problems.append(f"blob {descriptor['digest']} does not match its descriptor")
        return data

    with open(os.path.join(out, "oci-layout")) as f:
        if json.load(f).get("imageLayoutVersion") != "1.0.0":
            problems.append("oci-layout: imageLayoutVersion is not 1.0.0")
    with open(os.path.join(out, "index.json")) as f:
        index = json.load(f)
    refs = [m for m in index["manifests"]
            if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag]
    if len(refs) != 1:
        return problems + [f"index.json: tag {tag} found {len(refs)} times"]
    manifest = json.loads(blob(refs[0]))
    config = json.loads(blob(manifest["config"]))
    if len(manifest["layers"]) != 1:
        problems.append("the image must have exactly one layer (Istio's compat Wasm image)")
    layer = blob(manifest["layers"][0])
    raw = gzip.decompress(layer)
    if config["rootfs"]["diff_ids"] != [digest(raw)]:
        problems.append("config diff_ids do not match the layer")
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        names = tar.getnames()
        if names != [WASM_NAME]:
            problems.append(f"layer holds {names}, not [{WASM_NAME}]")
        else:
            member = tar.extractfile(WASM_NAME)
            if member is None or member.read() != wasm:
                problems.append(f"{WASM_NAME} in the layer is not the built filter")
    return problems


def main() -> int:
    args = sys.argv[1:]
    check = args[:1] == ["--verify"]
    if check:
        args = args[1:]
    if len(args) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    wasm_path, out, tag = args
    with open(wasm_path, "rb") as f:
        wasm = f.read()
    if check:
        problems = verify(wasm, out, tag)
        for p in problems:
            print(f"{out}: {p}", file=sys.stderr)
        if not problems:
            print(f"{out}: OCI layout ok, {tag} -> {WASM_NAME} ({len(wasm)} bytes)")
        return 1 if problems else 0
    files = build(wasm, tag)
    write(files, out)
    manifest_digest = json.loads(files["index.json"])["manifests"][0]["digest"]
    print(f"{out}: OCI image layout, tag {tag}")
    print(f"  image digest (the `sha256` pin for an oci:// module): {manifest_digest}")
    print(f"  module sha256 (for an http(s):// url to the .wasm): {hashlib.sha256(wasm).hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
