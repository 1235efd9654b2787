// Offline keyless Sigstore rig: Sigstore's own mock services (npm @sigstore/mock)
// served over plain HTTP on loopback, shaped so that sigstore-python 4.x can sign
// against them and both sigstore-python and sigstore-js can verify the result.
//
//   node server.mjs --trust-config DIR/trust_config.json [--port 0] [--no-tsa]
//                   [--fulcio-clock-offset S] [--rekor-clock-offset S] [--tsa-clock-offset S]
//                   [--issuer-org ORG] [--no-rekor] [--no-ctlog]
//
// --issuer-org names the CA's organisation (default sigstore.mock): "sigstore.dev" makes a
// public-good-like instance, "GitHub, Inc." with --no-rekor --no-ctlog a GitHub-like one
// (GitHub's own Sigstore instance has a Fulcio and a TSA but no transparency log and no CT
// log; its trusted root lists neither). gh picks the trust domain by that organisation.
//
// When ready it writes the ClientTrustConfig to --trust-config, the bare trusted root
// (trusted_root.json) and signing config (signing_config.json) beside it, and prints
// ONE JSON line on stdout: {"url", "trust_config", "trusted_root", "signing_config", "tsa"}.
//
// Services (all on one origin, because sigstore-python joins absolute paths onto the
// Fulcio URL and appends /api/v1 to the Rekor URL, so path prefixes cannot separate them):
//   POST /api/v2/signingCert   Fulcio (mock CA; SCTs from the mock CT log embedded)
//   POST /api/v1/log/entries   Rekor v1 (mock tlog; dsse, hashedrekord and intoto entries
//                              canonicalised here, see below)
//   POST /api/v1/timestamp     RFC 3161 TSA (DER TimeStampReq in, DER TimeStampResp out)
//   GET  /healthz
//
// Clock offsets (seconds, may be negative) shift what each mock believes "now" is. They
// exist to build failure scenarios: e.g. --rekor-clock-offset 1200 makes the log's
// integratedTime fall after the 10-minute Fulcio certificate expired ("expired at time
// of signing"); --fulcio-clock-offset -1200 issues certificates that are already expired.
import { createHash, createPublicKey, generateKeyPairSync, verify as nodeVerify, X509Certificate } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';

import { createRequire } from 'node:module';

// Load the CommonJS builds, the same module instances @sigstore/mock uses: the ESM
// builds of @peculiar/webcrypto, pkijs and asn1js define their own classes, and their
// instanceof checks reject keys and ASN.1 objects made by the other copy.
const require = createRequire(import.meta.url);
// @peculiar/x509 resolves its dependencies through tsyringe, which needs the Reflect
// metadata polyfill loaded first.
require('reflect-metadata');
const { Crypto } = require('@peculiar/webcrypto');
const x509 = require('@peculiar/x509');
const mock = require('@sigstore/mock');
const asn1js = require('asn1js');
const pkijs = require('pkijs');

const MAX_BODY = 4 << 20;
// Trust material is declared valid from well before any test runs, so backdated
// scenarios are judged by the certificates' own validity, not by the trust root window.
const TRUST_START = '2020-01-01T00:00:00Z';
const OPERATOR = 'imgseal-sigstore-rig';

function parseArgs(argv) {
  const opts = {
    host: '127.0.0.1',
    port: 0,
    trustConfig: null,
    tsa: true,
    fulcioOffset: 0,
    rekorOffset: 0,
    tsaOffset: 0,
    issuerOrg: 'sigstore.mock',
    rekor: true,
    ctlog: true,
  };
  const number = (flag, value) => {
    const n = Number(value);
    if (value === undefined || !Number.isFinite(n)) {
      usage(`${flag} needs a number of seconds, got ${JSON.stringify(value)}`);
    }
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    switch (flag) {
      case '--trust-config':
        opts.trustConfig = argv[++i];
        break;
      case '--host':
        opts.host = argv[++i];
        break;
      case '--port':
        opts.port = number(flag, argv[++i]);
        break;
      case '--no-tsa':
        opts.tsa = false;
        break;
      case '--fulcio-clock-offset':
        opts.fulcioOffset = number(flag, argv[++i]);
        break;
      case '--rekor-clock-offset':
        opts.rekorOffset = number(flag, argv[++i]);
        break;
      case '--tsa-clock-offset':
        opts.tsaOffset = number(flag, argv[++i]);
        break;
      case '--issuer-org':
        opts.issuerOrg = argv[++i];
        if (!opts.issuerOrg) usage('--issuer-org needs a name');
        break;
      case '--no-rekor':
        opts.rekor = false;
        break;
      case '--no-ctlog':
        opts.ctlog = false;
        break;
      default:
        usage(`unknown argument ${JSON.stringify(flag)}`);
    }
  }
  if (!opts.trustConfig) usage('--trust-config PATH is required');
  if (opts.host !== '127.0.0.1' && opts.host !== '::1' && opts.host !== 'localhost') {
    usage('the rig only listens on loopback');
  }
  return opts;
}

function usage(message) {
  process.stderr.write(`server.mjs: ${message}\n`);
  process.exit(2);
}

const newKeyPair = () => generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
const spkiDer = (keyObject) => keyObject.export({ format: 'der', type: 'spki' });
const sha256 = (data) => createHash('sha256').update(data).digest();
const b64 = (buf) => Buffer.from(buf).toString('base64');
const clockWithOffset = (seconds) => () => new Date(Date.now() + seconds * 1000);

// Go's encoding/pem layout (64-column body, trailing newline), which is what Rekor's
// x509.PublicKey.CanonicalValue() emits for a certificate (cryptoutils.MarshalCertificateToPEM).
function certificatePem(der) {
  const body = b64(der).match(/.{1,64}/g).join('\n');
  return `-----BEGIN CERTIFICATE-----\n${body}\n-----END CERTIFICATE-----\n`;
}

class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// ---------------------------------------------------------------------------------
// Fulcio
// ---------------------------------------------------------------------------------

// The mock CA's self-signed root starts "now" at start-up; a certificate issued with a
// backdated clock would then predate its own issuer and fail for the wrong reason. Swap
// in a root with the same name and key whose validity began a day ago.
async function backdatedRoot(ca, name) {
  const crypto = new Crypto();
  const day = 24 * 60 * 60 * 1000;
  const keys = ca.keyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: '01',
      name,
      notBefore: new Date(Date.now() - day),
      notAfter: new Date(Date.now() + 365 * day),
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-384' },
      keys,
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.keyCertSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto),
        await x509.AuthorityKeyIdentifierExtension.create(keys.publicKey, false, crypto),
      ],
    },
    crypto,
  );
  return cert;
}

// RFC 4514 string form of the CA's name; the organisation may hold a comma ("GitHub, Inc.").
const caName = (org) => `CN=sigstore,O=${org.replace(/([,+"\\<>;=])/g, '\\$1')}`;

// The mock CA writes its own fixed issuer name (O=sigstore.mock) into every leaf. To stand
// in for another instance the leaf must name that instance's CA, so issuance is redone here
// with the same profile the mock uses (fulcio pkg/ca/common.go: 10-minute validity,
// digitalSignature, codeSigning EKU, SAN, key identifiers, the claim extensions) under the
// configured name; the SCT comes from the mock CT log when the instance has one.
function issueAs(ca, ctLog, name) {
  const crypto = new Crypto();
  return async (opts) => {
    const key = await crypto.subtle.importKey('spki', opts.publicKey, { name: 'ECDSA', namedCurve: 'P-256' }, true, [
      'verify',
    ]);
    const now = ca.getCurrentTime();
    const tbs = {
      serialNumber: Date.now().toString(16),
      notBefore: now,
      notAfter: new Date(now.getTime() + 10 * 60 * 1000),
      issuer: name,
      publicKey: key,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-384' },
      signingKey: ca.keyPair.privateKey,
      extensions: [
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.codeSigning]),
        new x509.SubjectAlternativeNameExtension([{ type: 'url', value: opts.subjectAltName }], true),
        await x509.SubjectKeyIdentifierExtension.create(key, false, crypto),
        await x509.AuthorityKeyIdentifierExtension.create(ca.keyPair.publicKey, false, crypto),
        ...(opts.extensions || []).map(
          (e) =>
            new x509.Extension(
              e.oid,
              false,
              e.legacy === true ? Buffer.from(e.value) : new asn1js.Utf8String({ value: e.value }).toBER(false),
            ),
        ),
      ],
    };
    if (ctLog) {
      const preCert = await x509.X509CertificateGenerator.create(tbs, crypto);
      const issuerId = await crypto.subtle.digest('SHA-256', await crypto.subtle.exportKey('spki', ca.keyPair.publicKey));
      const sct = Buffer.from(await ctLog.log(preCert.rawData, issuerId));
      const list = Buffer.concat([Buffer.from([0x00, sct.length]), sct]);
      tbs.extensions.push(
        new x509.Extension('1.3.6.1.4.1.11129.2.4.2', false, new asn1js.OctetString({ valueHex: list }).toBER(false)),
      );
    }
    return Buffer.from((await x509.X509CertificateGenerator.create(tbs, crypto)).rawData);
  };
}

// GitHub Actions tokens (iss token.actions.githubusercontent.com, or a GHE.com tenant's)
// name the workflow in job_workflow_ref; Fulcio's GitHub principal makes the SAN
// https://<host>/<job_workflow_ref> (fulcio pkg/identity/github). The mock takes the SAN
// from one claim, so that value is added to the token as one.
const GITHUB_ISSUER = /^https:\/\/token\.actions\.(?:githubusercontent\.com|([a-z0-9-]+)\.ghe\.com)$/;
const SAN_CLAIM = 'imgseal_rig_san';

function withGithubSan(token, claims) {
  const m = typeof claims.iss === 'string' ? GITHUB_ISSUER.exec(claims.iss) : null;
  if (!m || typeof claims.job_workflow_ref !== 'string') return null;
  const host = m[1] ? `${m[1]}.ghe.com` : 'github.com';
  const parts = token.split('.');
  const payload = { ...claims, [SAN_CLAIM]: `https://${host}/${claims.job_workflow_ref}` };
  parts[1] = Buffer.from(JSON.stringify(payload)).toString('base64url');
  return parts.join('.');
}

function decodeJwtClaims(token) {
  const parts = token.split('.');
  if (parts.length !== 3) throw new HttpError(401, 'identity token is not a JWT');
  try {
    return JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
  } catch {
    throw new HttpError(401, 'identity token payload is not JSON');
  }
}

// sigstore-python's Fulcio client (sigstore/_internal/fulcio/client.py) sends the token
// as "Authorization: Bearer" and the CSR as base64(PEM); the mock handler reads
// credentials.oidcIdentityToken from the body and wants the CSR as PEM. Real Fulcio
// accepts both shapes, so the rig does too.
function fulcioRequest(headers, body) {
  let json;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch {
    throw new HttpError(400, 'request body is not JSON');
  }
  const auth = headers.authorization || '';
  const bearer = auth.startsWith('Bearer ') ? auth.slice('Bearer '.length).trim() : null;
  let token = json?.credentials?.oidcIdentityToken || bearer;
  if (!token) throw new HttpError(401, 'no OIDC identity token (Authorization: Bearer or credentials)');
  const claims = decodeJwtClaims(token);
  const now = Date.now() / 1000;
  // Fulcio rejects expired tokens (and tokens for another audience); so does the rig.
  if (typeof claims.exp !== 'number' || claims.exp < now) throw new HttpError(401, 'identity token expired');
  const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
  if (!aud.includes('sigstore')) throw new HttpError(401, 'identity token audience is not "sigstore"');
  if (typeof claims.iss !== 'string' || !claims.iss) throw new HttpError(401, 'identity token has no issuer');

  let csr = json.certificateSigningRequest;
  if (typeof csr === 'string' && !csr.includes('-----BEGIN')) {
    csr = Buffer.from(csr, 'base64').toString('utf8');
  }
  const githubToken = withGithubSan(token, claims);
  if (githubToken) token = githubToken;
  const request = { credentials: { oidcIdentityToken: token } };
  if (json.publicKeyRequest) request.publicKeyRequest = json.publicKeyRequest;
  else if (csr) request.certificateSigningRequest = csr;
  else throw new HttpError(400, 'neither certificateSigningRequest nor publicKeyRequest');
  // Email-style identities (Fulcio's "email" claim) name the signer by email; workload
  // identities by "sub". The mock takes one claim name per handler instance.
  const claim = githubToken ? SAN_CLAIM : typeof claims.email === 'string' && claims.email ? 'email' : 'sub';
  return { claim, body: Buffer.from(JSON.stringify(request)) };
}

// ---------------------------------------------------------------------------------
// Rekor v1
// ---------------------------------------------------------------------------------

function pae(payloadType, payload) {
  const type = Buffer.from(payloadType, 'utf8');
  return Buffer.concat([
    Buffer.from(`DSSEv1 ${type.length} `),
    type,
    Buffer.from(` ${payload.length} `),
    payload,
  ]);
}

function decodeB64(value, what) {
  if (typeof value !== 'string') throw new HttpError(400, `${what} is not a string`);
  // DSSE allows standard and URL-safe base64 (secure-systems-lab/dsse envelope.md).
  const normalised = value.replace(/-/g, '+').replace(/_/g, '/');
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(normalised)) throw new HttpError(400, `${what} is not base64`);
  return Buffer.from(normalised, 'base64');
}

function loadVerifier(b64Pem, what) {
  const pem = decodeB64(b64Pem, what).toString('utf8');
  try {
    if (pem.includes('CERTIFICATE')) {
      const cert = new X509Certificate(pem);
      return { key: cert.publicKey, canonical: certificatePem(cert.raw) };
    }
    const key = createPublicKey(pem);
    return { key, canonical: key.export({ format: 'pem', type: 'spki' }).toString() };
  } catch (e) {
    throw new HttpError(400, `${what}: cannot parse key or certificate: ${e.message}`);
  }
}

// What real Rekor stores for a proposed dsse/v0.0.1 entry
// (sigstore/rekor pkg/types/dsse/v0.0.1/entry.go, Unmarshal + Canonicalize):
//   payloadHash  = sha256(base64-decoded envelope payload)
//   envelopeHash = sha256(the envelope string exactly as submitted)
//   signatures   = [{signature: sig as in the envelope, verifier: base64(canonical PEM)}],
//                  every signature verified by one of the proposed verifiers, sorted by signature.
// The proposedContent itself is not persisted. The mock echoes the proposal instead,
// which is why sigstore-python's verify_dsse rejected its entries.
function canonicalDsse(spec) {
  const proposed = spec?.proposedContent;
  if (!proposed || typeof proposed.envelope !== 'string') {
    throw new HttpError(400, 'dsse: spec.proposedContent.envelope is required');
  }
  if (spec.payloadHash || spec.envelopeHash || spec.signatures) {
    throw new HttpError(400, 'dsse: server-computed fields must not be proposed');
  }
  let env;
  try {
    env = JSON.parse(proposed.envelope);
  } catch {
    throw new HttpError(400, 'dsse: envelope is not JSON');
  }
  if (typeof env.payloadType !== 'string' || !Array.isArray(env.signatures) || env.signatures.length === 0) {
    throw new HttpError(400, 'dsse: envelope needs payloadType and at least one signature');
  }
  const payload = decodeB64(env.payload, 'dsse: payload');
  const message = pae(env.payloadType, payload);
  const verifiers = (proposed.verifiers || []).map((v, i) => loadVerifier(v, `dsse: verifiers[${i}]`));
  if (verifiers.length === 0) throw new HttpError(400, 'dsse: no verifiers proposed');
  const bySig = new Map();
  for (const sig of env.signatures) {
    const raw = decodeB64(sig.sig, 'dsse: signature');
    const match = verifiers.find((v) => nodeVerify('sha256', message, v.key, raw));
    if (!match) throw new HttpError(400, 'dsse: all signatures must have a key that verifies it');
    bySig.set(sig.sig, match);
  }
  const signatures = [...bySig.keys()].sort().map((sig) => ({
    signature: sig,
    verifier: b64(Buffer.from(bySig.get(sig).canonical)),
  }));
  return {
    apiVersion: '0.0.1',
    kind: 'dsse',
    spec: {
      envelopeHash: { algorithm: 'sha256', value: sha256(Buffer.from(proposed.envelope, 'utf8')).toString('hex') },
      payloadHash: { algorithm: 'sha256', value: sha256(payload).toString('hex') },
      signatures,
    },
  };
}

// hashedrekord/v0.0.1 is stored with only data.hash, signature.content and
// signature.publicKey.content (rekor pkg/types/hashedrekord/v0.0.1/entry.go Canonicalize).
// The signature over a prehashed digest is not re-verified here (Node's crypto has no
// prehashed ECDSA verify); the verifiers under test check it themselves.
function canonicalHashedRekord(spec) {
  const hash = spec?.data?.hash;
  const content = spec?.signature?.content;
  const pub = spec?.signature?.publicKey?.content;
  if (!hash || !['sha256', 'sha384', 'sha512'].includes(hash.algorithm) || !/^[0-9a-f]+$/.test(hash.value || '')) {
    throw new HttpError(400, 'hashedrekord: spec.data.hash {algorithm, value} is required');
  }
  if (typeof content !== 'string' || decodeB64(content, 'hashedrekord: signature').length === 0) {
    throw new HttpError(400, 'hashedrekord: spec.signature.content is required');
  }
  const verifier = loadVerifier(pub, 'hashedrekord: publicKey');
  return {
    apiVersion: '0.0.1',
    kind: 'hashedrekord',
    spec: {
      data: { hash: { algorithm: hash.algorithm, value: hash.value } },
      signature: { content, publicKey: { content: b64(Buffer.from(verifier.canonical)) } },
    },
  };
}

// intoto/v0.0.2 as current Rekor stores it (sigstore/rekor pkg/types/intoto/v0.0.2/entry.go,
// what cosign 2.x `attest` without the bundle format uploads). The proposed envelope carries
// the payload's and each signature's base64 text as base64 []byte fields (so twice encoded),
// each signature with its key or certificate (base64 PEM); every signature must verify over
// PAE. Canonicalize keeps the envelope's payloadType and signatures, not the payload, plus
// hash = sha256 of the envelope JSON and payloadHash = sha256 of the payload.
function canonicalIntoto(spec) {
  const content = spec?.content;
  const env = content?.envelope;
  if (!env || typeof env.payloadType !== 'string' || !Array.isArray(env.signatures) || env.signatures.length === 0) {
    throw new HttpError(400, 'intoto: spec.content.envelope needs payloadType and at least one signature');
  }
  if (content.hash || content.payloadHash) {
    throw new HttpError(400, 'intoto: server-computed fields must not be proposed');
  }
  const payloadText = decodeB64(env.payload, 'intoto: payload').toString('utf8');
  const payload = decodeB64(payloadText, 'intoto: payload text');
  const message = pae(env.payloadType, payload);
  const signatures = env.signatures.map((sig, i) => {
    const sigText = decodeB64(sig.sig, `intoto: signatures[${i}].sig`).toString('utf8');
    const verifier = loadVerifier(sig.publicKey, `intoto: signatures[${i}].publicKey`);
    if (!nodeVerify('sha256', message, verifier.key, decodeB64(sigText, `intoto: signatures[${i}] text`))) {
      throw new HttpError(400, `intoto: signatures[${i}] does not verify with its key`);
    }
    return { ...(sig.keyid ? { keyid: sig.keyid } : {}), sig: sig.sig, publicKey: sig.publicKey, text: sigText };
  });
  const envelope = JSON.stringify({
    payload: payloadText,
    payloadType: env.payloadType,
    signatures: signatures.map((s) => ({ keyid: s.keyid || '', sig: s.text })),
  });
  return {
    apiVersion: '0.0.2',
    kind: 'intoto',
    spec: {
      content: {
        envelope: {
          payloadType: env.payloadType,
          signatures: signatures.map(({ text: _text, ...kept }) => kept),
        },
        hash: { algorithm: 'sha256', value: sha256(Buffer.from(envelope)).toString('hex') },
        payloadHash: { algorithm: 'sha256', value: sha256(payload).toString('hex') },
      },
    },
  };
}

function rekorRequest(body) {
  let entry;
  try {
    entry = JSON.parse(body.toString('utf8'));
  } catch {
    throw new HttpError(400, 'proposed entry is not JSON');
  }
  const kindVersion = `${entry?.kind}/${entry?.apiVersion}`;
  let canonical;
  if (kindVersion === 'dsse/0.0.1') canonical = canonicalDsse(entry.spec);
  else if (kindVersion === 'hashedrekord/0.0.1') canonical = canonicalHashedRekord(entry.spec);
  else if (kindVersion === 'intoto/0.0.2') canonical = canonicalIntoto(entry.spec);
  else throw new HttpError(400, `unsupported entry kind/apiVersion ${kindVersion}`);
  return Buffer.from(JSON.stringify(canonical));
}

// ---------------------------------------------------------------------------------
// RFC 3161 TSA
// ---------------------------------------------------------------------------------

// The mock TSA handler takes JSON; sigstore-python's TSA client posts a DER
// TimeStampReq (RFC 3161 §2.4.1). Parse it here and hand the mock's signer the fields.
// The nonce is echoed byte-for-byte: clients send 64-bit random nonces, which do not fit
// the JavaScript number the mock expects, so the mock's TSTInfo gets the original INTEGER.
function tsaRequest(body) {
  let req;
  try {
    const asn1 = asn1js.fromBER(new Uint8Array(body).buffer);
    if (asn1.offset === -1) throw new Error(asn1.result.error);
    req = new pkijs.TimeStampReq({ schema: asn1.result });
  } catch (e) {
    throw new HttpError(400, `not a DER TimeStampReq: ${e.message}`);
  }
  if (req.version !== 1) throw new HttpError(400, `unsupported TimeStampReq version ${req.version}`);
  const imprint = req.messageImprint;
  return {
    artifactHash: Buffer.from(imprint.hashedMessage.valueBlock.valueHexView),
    hashAlgorithmOID: imprint.hashAlgorithm.algorithmId,
    nonce: 0,
    nonceDer: req.nonce ? Buffer.from(req.nonce.valueBlock.valueHexView) : null,
    policyOID: req.reqPolicy || '1.3.6.1.4.1.57264.2',
    certReq: req.certReq ?? false,
  };
}

function patchTsaNonce(tsa) {
  const original = tsa.tstInfo.bind(tsa);
  tsa.tstInfo = (req) => {
    const info = original(req);
    if (req.nonceDer) info.nonce = new asn1js.Integer({ valueHex: req.nonceDer });
    else delete info.nonce;
    return info;
  };
}

// ---------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY) {
        reject(new HttpError(413, 'request body too large'));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function send(res, status, body, contentType) {
  const data = Buffer.isBuffer(body) ? body : Buffer.from(String(body));
  res.writeHead(status, { 'Content-Type': contentType, 'Content-Length': data.length });
  res.end(data);
}

function sendError(res, status, message) {
  send(res, status, JSON.stringify({ code: status, message }), 'application/json');
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));

  const server = http.createServer();
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, resolve);
  });
  const { port } = server.address();
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  const url = `http://${host}:${port}`;

  const ctKeys = newKeyPair();
  const caKeys = newKeyPair();
  const tlogKeys = newKeyPair();
  const tsaKeys = newKeyPair();

  const ctlog = await mock.initializeCTLog(ctKeys);
  ctlog.getCurrentTime = clockWithOffset(opts.fulcioOffset);
  const ca = await mock.initializeCA(caKeys, opts.ctlog ? ctlog : undefined);
  ca.getCurrentTime = clockWithOffset(opts.fulcioOffset);
  const name = caName(opts.issuerOrg);
  ca.root = await backdatedRoot(ca, name);
  ca.issueCertificate = issueAs(ca, opts.ctlog ? ctlog : null, name);
  // The checkpoint origin names the log by host:port, as real Rekor names itself.
  const tlog = await mock.initializeTLog(url, tlogKeys);
  tlog.getCurrentTime = () => Date.now() + opts.rekorOffset * 1000;
  let tsa = null;
  if (opts.tsa) {
    tsa = await mock.initializeTSA(tsaKeys);
    // Whole seconds only (the mock's accuracy is 1 s anyway). pkijs writes genTime
    // fractions DER-style, without trailing zeros ("...00.5Z"), and @sigstore/core's
    // time parser accepts only exactly three digits, so one stamp in ten would fail
    // sigstore-js verification with "invalid time".
    const tsaClock = clockWithOffset(opts.tsaOffset);
    tsa.getCurrentTime = () => new Date(Math.floor(tsaClock().getTime() / 1000) * 1000);
    patchTsaNonce(tsa);
  }

  const fulcio = {
    sub: mock.fulcioHandler(ca, { subjectClaim: 'sub' }),
    email: mock.fulcioHandler(ca, { subjectClaim: 'email' }),
    [SAN_CLAIM]: mock.fulcioHandler(ca, { subjectClaim: SAN_CLAIM }),
  };
  const rekor = mock.rekorHandler(tlog);
  const timestamp = tsa ? mock.tsaHandler(tsa) : null;

  const routes = {
    [fulcio.sub.path]: async (req, body) => {
      const { claim, body: adapted } = fulcioRequest(req.headers, body);
      return fulcio[claim].fn(adapted);
    },
  };
  if (opts.rekor) routes[rekor.path] = async (_req, body) => rekor.fn(rekorRequest(body));
  if (timestamp) {
    // Call the mock's signer directly: its handler only parses JSON requests.
    // sigstore-js (@sigstore/sign TSAWitness, what actions/attest uses) posts JSON, which the
    // mock's own handler reads; sigstore-python posts a DER TimeStampReq.
    routes[timestamp.path] = async (req, body) =>
      (req.headers['content-type'] || '').startsWith('application/json')
        ? timestamp.fn(body)
        : {
            statusCode: 201,
            response: await tsa.timestamp(tsaRequest(body)),
            contentType: 'application/timestamp-reply',
          };
  }

  server.on('request', async (req, res) => {
    try {
      const pathname = new URL(req.url, url).pathname;
      if (req.method === 'GET' && pathname === '/healthz') return send(res, 200, 'ok', 'text/plain');
      const route = routes[pathname];
      if (!route) return sendError(res, 404, `no route for ${req.method} ${pathname}`);
      if (req.method !== 'POST') return sendError(res, 405, `${pathname} takes POST`);
      const body = await readBody(req);
      const out = await route(req, body);
      if (out.statusCode >= 400) return sendError(res, out.statusCode, String(out.response));
      send(res, out.statusCode, out.response, out.contentType || 'application/json');
    } catch (e) {
      const status = e instanceof HttpError ? e.status : 500;
      if (status === 500) process.stderr.write(`server.mjs: ${e.stack || e}\n`);
      if (!res.headersSent) sendError(res, status, e.message);
    }
  });

  // Trust material, in the protobuf-specs JSON forms sigstore-python and sigstore-js load.
  const validFor = { start: TRUST_START };
  const tlogInstance = (keys, baseUrl) => ({
    baseUrl,
    hashAlgorithm: 'SHA2_256',
    publicKey: { rawBytes: b64(spkiDer(keys.publicKey)), keyDetails: 'PKIX_ECDSA_P256_SHA_256', validFor },
    logId: { keyId: b64(sha256(spkiDer(keys.publicKey))) },
  });
  const trustedRoot = {
    mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
    // GitHub's own root lists no tlogs and no ctlogs at all (protobuf JSON omits empty lists).
    ...(opts.rekor ? { tlogs: [tlogInstance(tlogKeys, url)] } : {}),
    certificateAuthorities: [
      {
        subject: { organization: opts.issuerOrg, commonName: 'sigstore' },
        uri: url,
        certChain: { certificates: [{ rawBytes: b64(ca.rootCertificate) }] },
        validFor,
      },
    ],
    ...(opts.ctlog ? { ctlogs: [tlogInstance(ctKeys, url)] } : {}),
    timestampAuthorities: tsa
      ? [
          {
            subject: { organization: 'sigstore.mock', commonName: 'tsa' },
            uri: `${url}${timestamp.path}`,
            // Leaf (the TSA signing certificate) first, root last: sigstore-python's
            // Verifier._verify_signed_timestamp takes certificates[0] and [-1] that way.
            certChain: { certificates: [{ rawBytes: b64(tsa.intCertificate) }, { rawBytes: b64(tsa.rootCertificate) }] },
            validFor,
          },
        ]
      : [],
  };
  const service = (serviceUrl) => ({ url: serviceUrl, majorApiVersion: 1, validFor, operator: OPERATOR });
  const signingConfig = {
    mediaType: 'application/vnd.dev.sigstore.signingconfig.v0.2+json',
    caUrls: [service(url)],
    oidcUrls: [],
    rekorTlogUrls: opts.rekor ? [service(url)] : [],
    rekorTlogConfig: { selector: 'ANY' },
    tsaUrls: tsa ? [service(`${url}${timestamp.path}`)] : [],
    tsaConfig: { selector: 'ANY' },
  };
  const trustConfig = {
    mediaType: 'application/vnd.dev.sigstore.clienttrustconfig.v0.1+json',
    trustedRoot,
    signingConfig,
  };

  const trustConfigPath = path.resolve(opts.trustConfig);
  const dir = path.dirname(trustConfigPath);
  mkdirSync(dir, { recursive: true });
  const trustedRootPath = path.join(dir, 'trusted_root.json');
  const signingConfigPath = path.join(dir, 'signing_config.json');
  writeFileSync(trustedRootPath, JSON.stringify(trustedRoot, null, 2) + '\n');
  writeFileSync(signingConfigPath, JSON.stringify(signingConfig, null, 2) + '\n');
  writeFileSync(trustConfigPath, JSON.stringify(trustConfig, null, 2) + '\n');

  const stop = () => server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);

  process.stdout.write(
    JSON.stringify({
      url,
      trust_config: trustConfigPath,
      trusted_root: trustedRootPath,
      signing_config: signingConfigPath,
      tsa: Boolean(tsa),
    }) + '\n',
  );
}

main().catch((e) => {
  process.stderr.write(`server.mjs: ${e.stack || e}\n`);
  process.exit(1);
});
