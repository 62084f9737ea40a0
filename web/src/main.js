// The upload page: Uppy picks and sends the files, airlock's upload API signs every request
// (the page never holds a bucket credential), then the page polls each upload to its verdict.

import AwsS3 from '@uppy/aws-s3'
import Uppy from '@uppy/core'
import {
  ApiError,
  FINAL_STATES,
  checkPartSize,
  describePolicy,
  formatSize,
  methodFor,
  parseProblem,
  partSizeFor,
  readHash,
  stillValid,
  toHex,
  uploadErrorMessage,
  usesMultipart,
} from './lib.js'

const $ = (id) => document.getElementById(id)

const settings = readHash(location.hash)
const apiBase = (settings.api ?? '').replace(/\/+$/, '')

/** What the page knows about each file, by Uppy's file id. */
const uploads = new Map()
let config = null

// ---------------------------------------------------------------------------------------
// The API

async function api(method, path, body, { idempotencyKey, signal } = {}) {
  const headers = { accept: 'application/json, application/problem+json' }
  if (path !== '/config') headers.authorization = `Bearer ${settings.token}`
  if (body !== undefined) headers['content-type'] = 'application/json'
  if (idempotencyKey) headers['idempotency-key'] = idempotencyKey
  let response
  try {
    response = await fetch(apiBase + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
    })
  } catch (err) {
    if (err?.name === 'AbortError') throw err
    throw new Error(`the API could not be reached (${method} ${path}): ${err?.message ?? err}`)
  }
  if (response.status === 204) return null
  const text = await response.text()
  if (!response.ok) {
    const problem = parseProblem(response.status, response.headers.get('content-type'), text)
    throw new ApiError({ ...problem, method, path })
  }
  try {
    return text === '' ? null : JSON.parse(text)
  } catch {
    throw new Error(`the API answered ${method} ${path} with something that is not JSON`)
  }
}

function randomKey() {
  if (typeof crypto.randomUUID === 'function') return crypto.randomUUID()
  return toHex(crypto.getRandomValues(new Uint8Array(16)))
}

async function sha256Of(blob) {
  // crypto.subtle exists only in a secure context (https, localhost, 127.0.0.1); elsewhere
  // the upload goes without a checksum, which the API allows.
  if (!globalThis.crypto?.subtle) return null
  return toHex(await crypto.subtle.digest('SHA-256', await blob.arrayBuffer()))
}

/** POST /uploads for a file, retried safely under the file's own Idempotency-Key. */
async function createIntent(file, method, signal) {
  const record = uploads.get(file.id)
  const body = {
    purpose: record.purpose,
    contentType: file.type || 'application/octet-stream',
    size: file.size,
    filename: file.name,
    method,
  }
  if (method !== 'multipart') {
    record.sha256 ??= await sha256Of(file.data)
    if (record.sha256) body.sha256 = record.sha256
  }
  const intent = await api('POST', '/uploads', body, {
    idempotencyKey: record.idempotencyKey,
    signal,
  })
  record.uploadId = intent.uploadId
  record.key = intent.key
  record.method = intent.method
  render(record)
  if (record.cancelled && intent.method !== 'multipart') {
    // Cancelled while this request was on its way: give the new intent up at once.
    giveUp(intent.uploadId).then(() => pollUntilFinal(record), () => {})
  }
  return intent
}

// ---------------------------------------------------------------------------------------
// Uppy and the AwsS3 plugin's hooks, each one mapped onto a route of the API

const uppy = new Uppy({ autoProceed: false, allowMultipleUploadBatches: true })

// Headers a page cannot set; the browser sends them itself (Content-Length is signed too).
const FORBIDDEN_HEADERS = new Set(['content-length', 'host', 'connection', 'expect'])

uppy.use(AwsS3, {
  limit: 4,
  shouldUseMultipart: (file) => usesMultipart(file.size, config.multipartThreshold),
  // The server signs each part for its size, so the parts are cut exactly as it cuts them.
  getChunkSize: (file) => partSizeFor(file.size, config.partSize),

  async getUploadParameters(file, { signal } = {}) {
    const record = uploads.get(file.id)
    const intent = await createIntent(file, record.singleMethod, signal)
    if (intent.method === 'post') {
      return { method: 'POST', url: intent.url, fields: intent.fields ?? {} }
    }
    const headers = Object.fromEntries(
      Object.entries(intent.headers ?? {}).filter(([k]) => !FORBIDDEN_HEADERS.has(k.toLowerCase())),
    )
    return { method: 'PUT', url: intent.url, headers }
  },

  async createMultipartUpload(file, signal) {
    const record = uploads.get(file.id)
    const intent = await createIntent(file, 'multipart', signal)
    record.partSize = intent.partSize
    for (const part of intent.parts ?? []) {
      record.parts.set(part.partNumber, {
        size: part.size,
        url: part.url,
        expiresAt: part.expiresAt ?? intent.expiresAt,
        used: false,
      })
    }
    // Uppy calls it uploadId; it is airlock's upload id, which the other routes take.
    return { uploadId: intent.uploadId, key: intent.key }
  },

  async signPart(file, { uploadId, partNumber, body, signal }) {
    const record = uploads.get(file.id)
    let part = record.parts.get(partNumber)
    // A URL from the create response serves once while it is valid; a retry of the part
    // (after an expiry or a network error) asks for a fresh one.
    if (!part || part.used || !stillValid(part.expiresAt)) {
      const signed = await api(
        'GET',
        `/uploads/${encodeURIComponent(uploadId)}/parts/${partNumber}`,
        undefined,
        { signal },
      )
      part = { size: signed.size, url: signed.url, expiresAt: signed.expiresAt, used: false }
    }
    part.used = true
    record.parts.set(partNumber, part)
    checkPartSize(partNumber, body.size, part.size)
    return { method: 'PUT', url: part.url }
  },

  // The API has no route listing an upload's parts: the parts this page saw uploaded are
  // the ones it can vouch for (used by Uppy when a paused upload resumes).
  listParts(file) {
    const record = uploads.get(file.id)
    return [...record.uploadedParts].map(([PartNumber, ETag]) => ({ PartNumber, ETag }))
  },

  async completeMultipartUpload(file, { uploadId, parts, signal }) {
    const record = uploads.get(file.id)
    const status = await api(
      'POST',
      `/uploads/${encodeURIComponent(uploadId)}/complete`,
      { parts: parts.map((p) => ({ partNumber: p.PartNumber, etag: p.ETag })) },
      { signal },
    )
    if (status) applyStatus(record, status)
    return {}
  },

  async abortMultipartUpload(file, { uploadId }) {
    await giveUp(uploadId)
    const record = uploads.get(file.id)
    if (record) pollUntilFinal(record)
  },
})

/** DELETE /uploads/{id}: the intent becomes EXPIRED (and a multipart upload is aborted). */
async function giveUp(uploadId) {
  try {
    await api('DELETE', `/uploads/${encodeURIComponent(uploadId)}`)
  } catch (err) {
    // 409: the upload is no longer PENDING, so there is nothing left to give up.
    if (!(err instanceof ApiError && err.status === 409)) throw err
  }
}

/** Stops a file's upload; the API is told, so the intent ends EXPIRED rather than waiting. */
function cancel(record) {
  record.cancelled = true
  record.phase = 'cancelling'
  render(record)
  // Uppy aborts the transfer; for a multipart upload its abortMultipartUpload hook tells the
  // API, for a single request the 'file-removed' handler does.
  uppy.removeFile(record.fileId)
}

uppy.on('s3-multipart:part-uploaded', (file, part) => {
  uploads.get(file.id)?.uploadedParts.set(part.PartNumber, part.ETag)
})

uppy.on('file-added', (file) => {
  const record = {
    fileId: file.id,
    name: file.name,
    size: file.size,
    contentType: file.type,
    purpose: file.meta.purpose,
    singleMethod: file.meta.singleMethod,
    method: methodFor(file.size, config.multipartThreshold, file.meta.singleMethod),
    idempotencyKey: randomKey(),
    sha256: null,
    uploadId: null,
    key: null,
    partSize: null,
    parts: new Map(),
    uploadedParts: new Map(),
    phase: 'waiting',
    progress: 0,
    status: null,
    error: null,
    row: null,
  }
  uploads.set(file.id, record)
  render(record)
  updateUploadButton()
})

uppy.on('file-removed', (file) => {
  const record = uploads.get(file.id)
  if (record && record.phase === 'waiting') {
    record.row?.remove()
    uploads.delete(file.id)
  } else if (record?.cancelled && record.uploadId && record.method !== 'multipart') {
    giveUp(record.uploadId)
      .then(() => pollUntilFinal(record))
      .catch((err) => {
        record.error = `cancelling failed: ${uploadErrorMessage(err)}`
        render(record)
      })
  }
  updateUploadButton()
})

uppy.on('upload-progress', (file, progress) => {
  const record = file && uploads.get(file.id)
  if (!record || record.cancelled) return
  record.phase = 'uploading'
  if (progress.bytesTotal) record.progress = progress.bytesUploaded / progress.bytesTotal
  render(record)
})

uppy.on('upload-start', (files) => {
  for (const file of files) {
    const record = uploads.get(file.id)
    if (record) {
      record.phase = 'uploading'
      record.error = null
      render(record)
    }
  }
  updateUploadButton()
})

uppy.on('upload-success', (file) => {
  const record = file && uploads.get(file.id)
  if (!record) return
  record.phase = 'uploaded'
  record.progress = 1
  render(record)
  pollUntilFinal(record)
})

uppy.on('upload-error', (file, error) => {
  const record = file && uploads.get(file.id)
  if (!record || record.cancelled) return
  record.phase = 'error'
  record.error = uploadErrorMessage(error)
  // A refusal of the request itself (bad size, type, purpose) will not pass on a retry.
  record.retryable = !(error instanceof ApiError && error.status < 500 && ![408, 409, 429].includes(error.status))
  render(record)
})

uppy.on('restriction-failed', (file, error) => {
  showPageError(file ? `${file.name}: ${error.message}` : error.message)
})

uppy.on('complete', updateUploadButton)

// ---------------------------------------------------------------------------------------
// Polling an upload to its verdict

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function pollUntilFinal(record) {
  if (record.polling || !record.uploadId) return
  record.polling = true
  let delay = 300
  let failures = 0
  while (!FINAL_STATES.has(record.status?.state)) {
    try {
      applyStatus(record, await api('GET', `/uploads/${encodeURIComponent(record.uploadId)}`))
      failures = 0
    } catch (err) {
      failures += 1
      record.error = `checking the upload failed: ${uploadErrorMessage(err)}`
      render(record)
      // A refusal (4xx) will not change by asking again; a network error might.
      if (failures >= 5 || (err instanceof ApiError && err.status < 500)) break
    }
    if (FINAL_STATES.has(record.status?.state)) break
    await sleep(delay)
    delay = Math.min(delay * 1.5, 2000)
  }
  record.polling = false
}

function applyStatus(record, status) {
  record.status = status
  if (status.state) record.phase = 'checked'
  record.error = null
  render(record)
}

// ---------------------------------------------------------------------------------------
// Rendering (DOM built node by node: names and reasons come from users and servers)

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag)
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue
    if (name === 'text') node.textContent = value
    else node.setAttribute(name, value === true ? '' : String(value))
  }
  for (const child of children) if (child) node.append(child)
  return node
}

const PHASE_LABELS = {
  waiting: 'Waiting to upload',
  uploading: 'Uploading',
  cancelling: 'Cancelling',
  uploaded: 'Uploaded, waiting for the check',
  error: 'Upload failed',
}

function render(record) {
  if (!record.row) {
    record.row = el('li', { class: 'upload', 'data-upload': true, 'data-file-id': record.fileId })
    $('uploads').append(record.row)
    $('uploads-empty').hidden = true
  }
  const row = record.row
  const status = record.status
  const state = status?.state ?? record.phase
  row.dataset.name = record.name
  row.dataset.state = state
  row.dataset.method = record.method
  if (record.uploadId) row.dataset.uploadId = record.uploadId
  else delete row.dataset.uploadId

  const stateLabel = status?.state ?? PHASE_LABELS[record.phase] ?? record.phase
  const head = el(
    'div',
    { class: 'upload-head' },
    el('span', { class: 'upload-name', 'data-field': 'name', text: record.name }),
    el('span', {
      class: `upload-state state-${String(state).toLowerCase()}`,
      'data-field': 'state',
      text: stateLabel,
    }),
  )

  const facts = el('dl', { class: 'upload-facts' })
  const fact = (label, value, field) => {
    if (value === null || value === undefined || value === '') return
    facts.append(el('dt', { text: label }), el('dd', { 'data-field': field, text: value }))
  }
  fact('Purpose', record.purpose, 'purpose')
  fact('Type', record.contentType || 'unknown', 'content-type')
  const size = status?.size ?? record.size
  fact('Size', size < 1024 ? formatSize(size) : `${formatSize(size)} (${size} bytes)`, 'size')
  fact('Method', record.method, 'method')
  fact('Upload id', record.uploadId, 'upload-id')
  if (status?.reason) fact('Reason', status.reason, 'reason')
  const meta = status?.metadata
  if (meta && (meta.width || meta.format)) {
    const dims = meta.width && meta.height ? `${meta.width}×${meta.height}` : ''
    fact('Image', [dims, meta.format].filter(Boolean).join(' '), 'metadata')
  }

  const parts = [head]
  if ((!status || !FINAL_STATES.has(status.state)) && record.phase !== 'error') {
    const percent = Math.round(record.progress * 100)
    parts.push(
      el('progress', {
        max: 100,
        value: percent,
        'data-field': 'progress',
        'aria-label': `${record.name}: ${percent}% sent`,
      }),
    )
  }
  parts.push(facts)
  if (record.error) {
    parts.push(el('p', { class: 'upload-error', role: 'alert', 'data-field': 'error', text: record.error }))
  }
  if (record.phase === 'error' && record.retryable && !status) {
    const retry = el('button', { type: 'button', class: 'link', 'data-action': 'retry', text: `Retry ${record.name}` })
    retry.addEventListener('click', () => {
      record.error = null
      uppy.retryUpload(record.fileId).catch((err) => showPageError(`${record.name}: ${err?.message ?? err}`))
    })
    parts.push(retry)
  }
  if (record.phase === 'uploading' && !status) {
    const stop = el('button', { type: 'button', class: 'link', 'data-action': 'cancel', text: `Cancel ${record.name}` })
    stop.addEventListener('click', () => cancel(record))
    parts.push(stop)
  }
  if (record.phase === 'waiting') {
    const remove = el('button', { type: 'button', class: 'link', text: `Remove ${record.name}` })
    remove.addEventListener('click', () => uppy.removeFile(record.fileId))
    parts.push(remove)
  }
  if (status?.state === 'READY') {
    if (status.original?.url) {
      parts.push(
        el('p', {}, el('a', { href: status.original.url, 'data-field': 'original', text: 'Download the checked original' })),
      )
    }
    const variants = Array.isArray(status.variants) ? status.variants : []
    if (variants.length > 0) {
      const gallery = el('div', { class: 'variants', 'data-field': 'variants' })
      for (const v of variants) {
        const caption = `${v.name}: ${v.width}×${v.height} ${v.contentType ?? ''}`.trim()
        gallery.append(
          el(
            'figure',
            { 'data-variant': v.name },
            el('img', { src: v.url, alt: `${record.name}, variant ${caption}`, loading: 'eager' }),
            el('figcaption', { text: caption }),
          ),
        )
      }
      parts.push(gallery)
    }
  }
  // Images already shown keep their element, so a re-render does not reload them.
  const oldImages = new Map([...row.querySelectorAll('img')].map((img) => [img.getAttribute('src'), img]))
  for (const img of parts.flatMap((p) => (p.querySelectorAll ? [...p.querySelectorAll('img')] : []))) {
    const old = oldImages.get(img.getAttribute('src'))
    if (old) img.replaceWith(old)
  }
  row.replaceChildren(...parts)
}

function showPageError(message) {
  const box = $('page-error')
  box.textContent = message
  box.hidden = false
}

function clearPageError() {
  const box = $('page-error')
  box.textContent = ''
  box.hidden = true
}

function updateUploadButton() {
  const waiting = [...uploads.values()].some((r) => r.phase === 'waiting')
  $('upload-button').disabled = !config || !waiting
}

// ---------------------------------------------------------------------------------------
// The form

function currentPolicy() {
  return config?.purposes?.[$('purpose').value]
}

function applyPurpose() {
  const policy = currentPolicy()
  $('purpose-help').textContent = describePolicy(policy)
  uppy.setOptions({
    restrictions: {
      allowedFileTypes: policy?.allowedTypes ?? null,
      maxFileSize: policy?.maxSize ?? null,
    },
  })
  $('file-input').setAttribute('accept', (policy?.allowedTypes ?? []).join(','))
}

function addFiles(fileList) {
  clearPageError()
  const purpose = $('purpose').value
  const singleMethod = $('single-method').value
  for (const file of fileList) {
    try {
      uppy.addFile({
        name: file.name,
        type: file.type,
        data: file,
        source: 'file-input',
        meta: { purpose, singleMethod },
      })
    } catch (err) {
      // Restriction failures are shown by the 'restriction-failed' handler; others here.
      if (!err?.isRestriction) showPageError(`${file.name}: ${err?.message ?? err}`)
    }
  }
}

async function start() {
  if (!settings.token) {
    showPageError(
      'No token in this page’s address. Open the address `airlock dev` printed; it ends in #token=…',
    )
  }
  try {
    config = await api('GET', '/config')
  } catch (err) {
    showPageError(`Cannot load the upload settings: ${uploadErrorMessage(err)}`)
    $('config-status').textContent = 'Not ready.'
    return
  }
  const select = $('purpose')
  select.replaceChildren(...Object.keys(config.purposes ?? {}).map((name) => el('option', { value: name, text: name })))
  select.disabled = false
  $('single-method').disabled = false
  $('file-input').disabled = !settings.token
  $('multipart-threshold').textContent = formatSize(config.multipartThreshold)
  $('config-status').textContent =
    `Files from ${formatSize(config.multipartThreshold)} on go in parts of ${formatSize(config.partSize)}.`
  applyPurpose()
  updateUploadButton()
  document.body.dataset.ready = settings.token ? 'true' : 'no-token'
}

$('purpose').addEventListener('change', applyPurpose)
$('file-input').addEventListener('change', (event) => {
  addFiles(event.target.files)
  event.target.value = ''
})
const dropZone = $('drop-zone')
dropZone.addEventListener('dragover', (event) => {
  event.preventDefault()
  dropZone.classList.add('dragging')
})
dropZone.addEventListener('dragleave', () => dropZone.classList.remove('dragging'))
dropZone.addEventListener('drop', (event) => {
  event.preventDefault()
  dropZone.classList.remove('dragging')
  if (!$('file-input').disabled) addFiles(event.dataTransfer.files)
})
$('upload-form').addEventListener('submit', (event) => {
  event.preventDefault()
  clearPageError()
  uppy.upload().catch((err) => showPageError(`The upload could not start: ${err?.message ?? err}`))
})

start()
