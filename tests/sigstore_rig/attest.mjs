// What actions/attest does, against the rig: sign an in-toto statement with sigstore-js
// (@sigstore/sign: Fulcio certificate for an OIDC token, TSA timestamp, Rekor entry when the
// instance has a log) and attach the bundle to an image with @sigstore/oci.
//
//   node attest.mjs --fulcio URL --token JWT (--tsa URL | --rekor URL)... --statement FILE
//                   [--bundle-out FILE] [--image HOST/REPO --digest sha256:HEX --predicate-type URI]
//
// actions/attest (src/attest.ts, with actions/toolkit packages/attest) builds a
// DSSEBundleBuilder with a FulcioSigner and, for public repositories, a RekorWitness (dsse
// entries) and, for GitHub's instance, a TSAWitness; it pushes the bundle JSON with
// attachArtifactToImage, mediaType = the bundle's, annotations
// dev.sigstore.bundle.content = dsse-envelope and dev.sigstore.bundle.predicateType.
// @sigstore/oci probes the referrers API and falls back to the sha256-<hex> tag index.
//
// Registry credentials come from RIG_REGISTRY_USER / RIG_REGISTRY_PASSWORD.
// Prints ONE JSON line: {"bundle": FILE, "mediaType", "attached": descriptor or null}.
// Exit 1 with a message on stderr when signing or pushing fails.
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { bundleToJSON } = require('@sigstore/bundle');
const { DSSEBundleBuilder, FulcioSigner, RekorWitness, TSAWitness } = require('@sigstore/sign');
const { attachArtifactToImage } = require('@sigstore/oci');

const IN_TOTO = 'application/vnd.in-toto+json';

function parseArgs(argv) {
  const opts = {};
  const flags = {
    '--fulcio': 'fulcio',
    '--token': 'token',
    '--tsa': 'tsa',
    '--rekor': 'rekor',
    '--statement': 'statement',
    '--bundle-out': 'bundleOut',
    '--image': 'image',
    '--digest': 'digest',
    '--predicate-type': 'predicateType',
  };
  for (let i = 0; i < argv.length; i++) {
    const name = flags[argv[i]];
    if (!name || argv[i + 1] === undefined) usage(`unknown argument or missing value: ${argv[i]}`);
    opts[name] = argv[++i];
  }
  for (const needed of ['fulcio', 'token', 'statement']) if (!opts[needed]) usage(`--${needed} is required`);
  if (!opts.tsa && !opts.rekor) usage('give --tsa and/or --rekor (a bundle needs a verified time)');
  if (opts.image && (!opts.digest || !opts.predicateType)) usage('--image needs --digest and --predicate-type');
  return opts;
}

function usage(message) {
  process.stderr.write(`attest.mjs: ${message}\n`);
  process.exit(2);
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const signer = new FulcioSigner({
    fulcioBaseURL: opts.fulcio,
    identityProvider: { getToken: async () => opts.token },
    retry: 0,
  });
  const witnesses = [];
  if (opts.rekor) witnesses.push(new RekorWitness({ rekorBaseURL: opts.rekor, entryType: 'dsse', retry: 0 }));
  if (opts.tsa) witnesses.push(new TSAWitness({ tsaBaseURL: opts.tsa, retry: 0 }));
  const builder = new DSSEBundleBuilder({ signer, witnesses });
  const bundle = bundleToJSON(await builder.create({ data: readFileSync(opts.statement), type: IN_TOTO }));
  const text = JSON.stringify(bundle);
  const bundleOut = opts.bundleOut || `${opts.statement}.sigstore.json`;
  writeFileSync(bundleOut, text);

  let attached = null;
  if (opts.image) {
    attached = await attachArtifactToImage({
      // The rig's registry asks for basic auth: @sigstore/oci treats an open registry's 202
      // to its probe POST as a challenge it cannot parse, as no real registry is open.
      credentials: { username: process.env.RIG_REGISTRY_USER || '', password: process.env.RIG_REGISTRY_PASSWORD || '' },
      imageName: opts.image,
      imageDigest: opts.digest,
      artifact: Buffer.from(text),
      mediaType: bundle.mediaType,
      annotations: {
        'dev.sigstore.bundle.content': 'dsse-envelope',
        'dev.sigstore.bundle.predicateType': opts.predicateType,
      },
      fetchOpts: { retry: 0 },
    });
  }
  process.stdout.write(JSON.stringify({ bundle: bundleOut, mediaType: bundle.mediaType, attached }) + '\n');
}

main().catch((e) => {
  const cause = e.cause ? `: ${e.cause.message || e.cause}` : '';
  process.stderr.write(`attest.mjs: ${e.message || e}${cause}\n`);
  process.exit(1);
});
