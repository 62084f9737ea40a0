// Pure helpers of the upload page: no DOM, no network, so they can be checked under node.

/** The page's settings from its address: `#token=...` (required) and `&api=...` (optional). */
export function readHash(hash) {
  const params = new URLSearchParams(hash.startsWith('#') ? hash.slice(1) : hash)
  const token = params.get('token')
  return { token: token && token.trim() !== '' ? token.trim() : null, api: params.get('api') }
}

/** A failed API call, carrying the problem+json body's fields. */
export class ApiError extends Error {
  constructor({ status, code, title, detail, method, path }) {
    super(problemMessage({ status, title, detail, method, path }))
    this.name = 'ApiError'
    this.status = status
    this.code = code
    this.title = title
    this.detail = detail
    // Uppy's retry logic reads `source.status` and does not retry a 4xx.
    this.source = { status }
  }
}

/** One line for a problem: its detail (what was wrong) first, then the title and status. */
export function problemMessage({ status, title, detail, method, path }) {
  const where = method && path ? ` (${method} ${path})` : ''
  if (detail && title) return `${detail} — ${title}, HTTP ${status}${where}`
  if (detail) return `${detail} — HTTP ${status}${where}`
  if (title) return `${title} — HTTP ${status}${where}`
  return `HTTP ${status}${where}`
}

/**
 * Reads an error response: an RFC 9457 problem when the body is one, otherwise the body's
 * first line as the detail.
 */
export function parseProblem(status, contentType, bodyText) {
  if (/json/i.test(contentType ?? '')) {
    try {
      const body = JSON.parse(bodyText)
      if (body && typeof body === 'object') {
        return {
          status: typeof body.status === 'number' ? body.status : status,
          code: typeof body.code === 'string' ? body.code : null,
          title: typeof body.title === 'string' ? body.title : null,
          detail: typeof body.detail === 'string' ? body.detail : null,
        }
      }
    } catch {
      // Not JSON after all: fall through and show the text.
    }
  }
  const firstLine = (bodyText ?? '').trim().split('\n')[0].slice(0, 300)
  return { status, code: null, title: null, detail: firstLine || null }
}

/** The `<Code>` and `<Message>` of an S3 error response, when the body is one. */
export function parseS3Error(xmlText) {
  if (typeof xmlText !== 'string') return null
  const code = /<Code>([^<]*)<\/Code>/.exec(xmlText)?.[1]
  const message = /<Message>([^<]*)<\/Message>/.exec(xmlText)?.[1]
  if (!code && !message) return null
  return { code: code ?? null, message: message ?? null }
}

/** A readable message for an error Uppy reports, including the bucket's own answer. */
export function uploadErrorMessage(err) {
  if (err instanceof ApiError) return err.message
  const xhr = err?.source
  if (xhr && typeof xhr.status === 'number' && xhr.status !== 0) {
    const s3 = parseS3Error(typeof xhr.responseText === 'string' ? xhr.responseText : '')
    const what = s3 ? `${s3.code ?? 'error'}: ${s3.message ?? ''}`.trim() : err.message
    return `the bucket refused the upload: ${what} (HTTP ${xhr.status})`
  }
  if (xhr && xhr.status === 0) {
    return 'the bucket could not be reached (network error, or its CORS settings refuse this page)'
  }
  return err?.message ?? String(err)
}

/** Hex of a digest. */
export function toHex(buffer) {
  return Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, '0')).join('')
}

/** States after which an upload does not change any more. */
export const FINAL_STATES = new Set(['READY', 'QUARANTINED', 'EXPIRED', 'FAILED'])

/** The multipart decision the server makes by size: multipart from the threshold on. */
export function usesMultipart(size, threshold) {
  return typeof threshold === 'number' && size >= threshold
}

/**
 * The single-request method a file is sent with: the page's choice, but never for a file the
 * server would send multipart.
 */
export function methodFor(size, threshold, singleMethod) {
  if (usesMultipart(size, threshold)) return 'multipart'
  return singleMethod === 'post' ? 'post' : 'put'
}

const MIB = 1024 * 1024
const MAX_PARTS = 10_000

/**
 * The part size the server signs a multipart upload of `size` bytes for: its configured part
 * size, grown in whole MiB when the file would otherwise need more than 10,000 parts.
 */
export function partSizeFor(size, minPartSize) {
  const needed = Math.ceil(Math.ceil(size / MAX_PARTS) / MIB) * MIB
  return Math.max(needed, minPartSize)
}

/**
 * Checks that the part the uploader cut matches the part the server signed (its size is part
 * of the signature, so any other size would be refused by the bucket).
 */
export function checkPartSize(partNumber, bodySize, signedSize) {
  if (typeof signedSize === 'number' && bodySize !== signedSize) {
    throw new Error(
      `part ${partNumber} is ${bodySize} bytes here but was signed for ${signedSize} bytes: ` +
        'the page and the server disagree on the part size',
    )
  }
}

/** Whether a signed URL expiring at `expiresAt` (RFC 3339) is still good for a while. */
export function stillValid(expiresAt, now = Date.now(), marginMs = 30_000) {
  if (!expiresAt) return true
  const t = Date.parse(expiresAt)
  return Number.isNaN(t) ? true : t - now > marginMs
}

/** Human size: bytes in KiB/MiB/GiB with one decimal. */
export function formatSize(bytes) {
  if (typeof bytes !== 'number' || !Number.isFinite(bytes)) return ''
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB']
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit += 1
  }
  return unit === 0 ? `${bytes} bytes` : `${value.toFixed(1)} ${units[unit]}`
}

/** A purpose's policy as one sentence for the page. */
export function describePolicy(policy) {
  if (!policy) return ''
  const types = Array.isArray(policy.allowedTypes) ? policy.allowedTypes.join(', ') : 'any type'
  const max = typeof policy.maxSize === 'number' ? `up to ${formatSize(policy.maxSize)}` : ''
  return `Accepts ${types}${max ? `, ${max}` : ''}.`
}
