// Independent cross-check verifier: verifies a Sigstore bundle with sigstore-js
// (@sigstore/verify), so that bundles imgseal makes or accepts are also judged by a
// second implementation than sigstore-python.
//
//   node verify.mjs --bundle B --trusted-root R
//                   (--identity I --issuer U | --key PUBLIC_KEY.pem)
//                   (--artifact FILE | --digest sha256:HEX)
//                   [--tlog-threshold N] [--ctlog-threshold N] [--timestamp-threshold N]
//                   [--any-payload]
//
// --digest also takes sha384:HEX / sha512:HEX (in-toto subjects named by those algorithms);
// --any-payload checks a DSSE envelope's signature without reading its payload as a
// statement (bundles whose payload is not in-toto).
//
// Exit 0 and "OK: ..." when verified; exit 1 and "FAIL: <reason>" otherwise; exit 2 on a
// usage error or an unreadable input file. Always exactly one line on stdout.
//
// Checks beyond @sigstore/verify's Verifier (which leaves them to its caller, as
// sigstore-js's top-level `sigstore.verify` does):
//   - message signatures: the bundle's messageDigest must equal the artifact's digest;
//     with --digest only, the signature is checked over the prehashed digest.
//   - DSSE: the payload must be an in-toto Statement with a subject whose sha256 equals
//     the artifact's digest (sigstore-python's verify_dsse leaves this to the caller too).
//   - --identity is matched exactly (sigstore-js treats the policy SAN as a regex).
//   - --key requires a public-key bundle and --identity a certificate bundle.
import { createHash, createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { bundleFromJSON } = require('@sigstore/bundle');
const { TrustedRoot } = require('@sigstore/protobuf-specs');
const { Verifier, toSignedEntity, toTrustMaterial } = require('@sigstore/verify');
const { p256, p384, p521 } = require('@noble/curves/nist');

const IN_TOTO_PAYLOAD_TYPE = 'application/vnd.in-toto+json';

class Failure extends Error {}
class Usage extends Error {}

function parseArgs(argv) {
  const opts = { tlogThreshold: 1, ctlogThreshold: 1, timestampThreshold: 1 };
  const valueFlags = {
    '--bundle': 'bundle',
    '--trusted-root': 'trustedRoot',
    '--identity': 'identity',
    '--issuer': 'issuer',
    '--key': 'key',
    '--artifact': 'artifact',
    '--digest': 'digest',
  };
  const countFlags = {
    '--tlog-threshold': 'tlogThreshold',
    '--ctlog-threshold': 'ctlogThreshold',
    '--timestamp-threshold': 'timestampThreshold',
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = argv[i + 1];
    if (flag in valueFlags || flag in countFlags) {
      if (value === undefined) throw new Usage(`${flag} needs a value`);
      i++;
    }
    if (flag === '--any-payload') {
      opts.anyPayload = true;
    } else if (flag in valueFlags) {
      opts[valueFlags[flag]] = value;
    } else if (flag in countFlags) {
      if (!/^\d+$/.test(value)) throw new Usage(`${flag} needs a non-negative integer, got ${value}`);
      opts[countFlags[flag]] = Number(value);
    } else {
      throw new Usage(`unknown argument ${JSON.stringify(flag)}`);
    }
  }
  if (opts.anyPayload === undefined) opts.anyPayload = false;
  if (!opts.bundle) throw new Usage('--bundle is required');
  if (!opts.trustedRoot) throw new Usage('--trusted-root is required');
  const keyless = opts.identity !== undefined || opts.issuer !== undefined;
  if (keyless === (opts.key !== undefined)) {
    throw new Usage('give either --identity and --issuer, or --key');
  }
  if (keyless && (!opts.identity || !opts.issuer)) throw new Usage('--identity and --issuer go together');
  if ((opts.artifact === undefined) === (opts.digest === undefined)) {
    throw new Usage('give exactly one of --artifact or --digest');
  }
  return opts;
}

function readInput(file, what) {
  try {
    return readFileSync(file);
  } catch (e) {
    throw new Usage(`cannot read ${what} ${file}: ${e.code || e.message}`);
  }
}

function parseJSON(bytes, what) {
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new Failure(`${what} is not JSON`);
  }
}

// The digests the artifact is known by: computed from the file (sha256, sha384, sha512) or
// the one given. `digest` is the sha256 one (message signatures), when known.
function artifactDigest(opts) {
  if (opts.artifact !== undefined) {
    const bytes = readInput(opts.artifact, 'artifact');
    const digests = {};
    for (const alg of ['sha256', 'sha384', 'sha512']) digests[alg] = createHash(alg).update(bytes).digest();
    return { bytes, digest: digests.sha256, digests };
  }
  const m = /^(sha256|sha384|sha512):([0-9a-f]+)$/.exec(opts.digest);
  const sizes = { sha256: 64, sha384: 96, sha512: 128 };
  if (!m || m[2].length !== sizes[m[1]]) {
    throw new Usage(`--digest must be sha256:, sha384: or sha512: with lowercase hex, got ${opts.digest}`);
  }
  const value = Buffer.from(m[2], 'hex');
  return { bytes: undefined, digest: m[1] === 'sha256' ? value : undefined, digests: { [m[1]]: value } };
}

const CURVES = { prime256v1: p256, secp384r1: p384, secp521r1: p521 };

// ECDSA over a prehashed digest (hashedrekord semantics). Node's crypto.verify always
// hashes its input, so use @noble/curves; allow high-S signatures like Go and OpenSSL do.
function verifyPrehashed(key, digest, signature) {
  const curve = CURVES[key.asymmetricKeyDetails?.namedCurve];
  if (key.asymmetricKeyType !== 'ec' || !curve) {
    throw new Failure(`--digest verification supports ECDSA keys only, not ${key.asymmetricKeyType}`);
  }
  const jwk = key.export({ format: 'jwk' });
  const point = Buffer.concat([Buffer.from([4]), Buffer.from(jwk.x, 'base64url'), Buffer.from(jwk.y, 'base64url')]);
  try {
    return curve.verify(signature, digest, point, { prehash: false, lowS: false, format: 'der' });
  } catch {
    return false;
  }
}

// A subject names the artifact when an algorithm both list agrees and none disagrees.
function checkStatementSubject(bundle, digests) {
  const env = bundle.content.dsseEnvelope;
  if (env.payloadType !== IN_TOTO_PAYLOAD_TYPE) {
    throw new Failure(`DSSE payloadType is ${env.payloadType}, not ${IN_TOTO_PAYLOAD_TYPE}`);
  }
  const statement = parseJSON(Buffer.from(env.payload), 'DSSE payload');
  const subjects = Array.isArray(statement?.subject) ? statement.subject : [];
  const names = (s) => {
    const shared = Object.keys(digests).filter((alg) => typeof s?.digest?.[alg] === 'string');
    return shared.length > 0 && shared.every((alg) => s.digest[alg].toLowerCase() === digests[alg].toString('hex'));
  };
  if (!subjects.some(names)) {
    const given = Object.entries(digests).map(([alg, v]) => `${alg}:${v.toString('hex')}`).join(', ');
    throw new Failure(`no in-toto subject has digest ${given}`);
  }
}

function escapeRegExp(s) {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function run(opts) {
  const rawBundle = parseJSON(readInput(opts.bundle, 'bundle'), 'bundle');
  const rawRoot = parseJSON(readInput(opts.trustedRoot, 'trusted root'), 'trusted root');
  const { bytes, digest, digests } = artifactDigest(opts);

  let bundle;
  try {
    bundle = bundleFromJSON(rawBundle);
  } catch (e) {
    throw new Failure(`invalid bundle: ${e.message}`);
  }
  let root;
  try {
    root = TrustedRoot.fromJSON(rawRoot);
  } catch (e) {
    throw new Failure(`invalid trusted root: ${e.message}`);
  }

  const material = bundle.verificationMaterial.content.$case;
  let keyFinder;
  let policy;
  if (opts.key !== undefined) {
    if (material !== 'publicKey') throw new Failure(`--key needs a public-key bundle, this one carries ${material}`);
    let key;
    try {
      key = createPublicKey(readInput(opts.key, 'key'));
    } catch (e) {
      if (e instanceof Usage) throw e;
      throw new Usage(`cannot load public key ${opts.key}: ${e.message}`);
    }
    // The caller names the key explicitly, so the bundle's hint only selects, never trusts.
    keyFinder = () => ({ publicKey: key, validFor: () => true });
  } else {
    if (material === 'publicKey') throw new Failure('bundle is signed with a bare public key, not a certificate');
    policy = {
      subjectAlternativeName: `^${escapeRegExp(opts.identity)}$`,
      extensions: { issuer: opts.issuer },
    };
  }

  const entity = toSignedEntity(bundle, bytes);
  if (bundle.content.$case === 'messageSignature') {
    if (digest === undefined) throw new Usage('a message signature needs --artifact or a sha256 --digest');
    const declared = bundle.content.messageSignature.messageDigest?.digest;
    if (declared && !Buffer.from(declared).equals(digest)) {
      throw new Failure('bundle message digest does not match the artifact');
    }
    if (bytes === undefined) {
      const signature = Buffer.from(bundle.content.messageSignature.signature);
      entity.signature.verifySignature = (key) => verifyPrehashed(key, digest, signature);
    }
  } else if (!opts.anyPayload) {
    checkStatementSubject(bundle, digests);
  }

  const verifier = new Verifier(toTrustMaterial(root, keyFinder), {
    tlogThreshold: opts.tlogThreshold,
    ctlogThreshold: opts.ctlogThreshold,
    timestampThreshold: opts.timestampThreshold,
  });
  let signer;
  try {
    signer = verifier.verify(entity, policy);
  } catch (e) {
    throw new Failure(`${e.code ? `${e.code}: ` : ''}${e.message}`);
  }
  // Belt and braces on top of the anchored regex: the SAN must be exactly the identity.
  if (policy && signer.identity?.subjectAlternativeName !== opts.identity) {
    throw new Failure(`certificate identity is ${signer.identity?.subjectAlternativeName}, not ${opts.identity}`);
  }
  const who = policy ? `${opts.identity} (${opts.issuer})` : `key ${opts.key}`;
  return `OK: ${bundle.content.$case} bundle verified for ${who}`;
}

function oneLine(s) {
  return String(s).replace(/\s+/g, ' ').trim();
}

try {
  const opts = parseArgs(process.argv.slice(2));
  process.stdout.write(`${oneLine(run(opts))}\n`);
  process.exit(0);
} catch (e) {
  if (e instanceof Usage) {
    process.stdout.write(`usage error: ${oneLine(e.message)}\n`);
    process.exit(2);
  }
  const reason = e instanceof Failure ? e.message : `unexpected error: ${e.message}`;
  process.stdout.write(`FAIL: ${oneLine(reason)}\n`);
  process.exit(1);
}
