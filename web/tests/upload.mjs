// End-to-end test of the upload page: starts `airlock dev` (API, S3-compatible endpoint,
// pipeline with a real clamd), opens the page it serves in headless Chromium, and uploads
// through it a JPEG photo (PUT), the EICAR test file (POST form), a 200 MiB text file
// (multipart), an empty file (which the API refuses) and a multipart upload cancelled in
// flight. Checks what the page shows against the API: the photo READY with its variants
// loaded, EICAR QUARANTINED as infected, the large file READY with its size, the refusal's
// problem detail, the cancelled upload EXPIRED; and what the page asked the API for
// (method, SHA-256 of single-request uploads, one Idempotency-Key per file). Saves a
// screenshot of the page to target/upload-page.png (set AIRLOCK_SCREENSHOT=docs/upload-page.png
// to refresh the one in the docs).
//
// Environment: AIRLOCK_BIN (default target/debug/airlock), CHROMIUM (default
// /usr/bin/chromium), AIRLOCK_SCREENSHOT (default target/upload-page.png).

import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { createHash } from 'node:crypto'
import { createWriteStream, existsSync } from 'node:fs'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium } from 'playwright-core'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
const binary = path.resolve(root, process.env.AIRLOCK_BIN ?? 'target/debug/airlock')
const chromiumPath = process.env.CHROMIUM ?? '/usr/bin/chromium'
const webDir = path.join(root, 'web', 'dist')
const screenshotPath = path.resolve(root, process.env.AIRLOCK_SCREENSHOT ?? 'target/upload-page.png')
const photoFixture = path.join(root, 'fixtures', 'objects', 'camera-photo.jpg')
const emptyFixture = path.join(root, 'fixtures', 'objects', 'empty.txt')

// Guards against a hang, not measurements: each is far above what a run takes.
const READY_TIMEOUT_MS = 120_000
const SETTLE_TIMEOUT_MS = 300_000
const IMAGE_TIMEOUT_MS = 30_000
const STOP_TIMEOUT_MS = 20_000

const LARGE_SIZE = 200 * 1024 * 1024
const FINAL_STATES = ['READY', 'QUARANTINED', 'EXPIRED', 'FAILED']

class TestFailure extends Error {}
const fail = (message) => {
  throw new TestFailure(message)
}

/** The EICAR test string, assembled here so that it never sits whole in the repository. */
function eicar() {
  return ['X5O!P%@AP[4\\PZX54(P^)7CC)7}$', 'EICAR-STANDARD-', 'ANTIVIRUS-', 'TEST-FILE!$H+H*'].join('')
}

/** A text file of exactly `size` bytes, printable lines, written in 1 MiB blocks. */
async function writeTextFile(file, size) {
  const line = 'airlock upload page test: a large plain text file sent in parts.\n'
  const block = Buffer.from(line.repeat(Math.ceil((1024 * 1024) / line.length))).subarray(0, 1024 * 1024)
  const out = createWriteStream(file)
  let written = 0
  while (written < size) {
    const chunk = block.subarray(0, Math.min(block.length, size - written))
    if (!out.write(chunk)) await once(out, 'drain')
    written += chunk.length
  }
  out.end()
  await once(out, 'finish')
}

/** The last lines the server wrote, for failure messages. */
class Tail {
  constructor(limit = 60) {
    this.limit = limit
    this.lines = []
    this.partial = ''
  }
  push(data) {
    const text = this.partial + data.toString()
    const lines = text.split('\n')
    this.partial = lines.pop()
    this.lines.push(...lines)
    if (this.lines.length > this.limit) this.lines.splice(0, this.lines.length - this.limit)
  }
  toString() {
    return [...this.lines, this.partial].filter(Boolean).join('\n')
  }
}

async function waitForReadyFile(file, child, output) {
  const deadline = Date.now() + READY_TIMEOUT_MS
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      fail(`airlock dev exited (${child.exitCode ?? child.signalCode}) before it was ready:\n${output}`)
    }
    try {
      const ready = JSON.parse(await fs.readFile(file, 'utf8'))
      for (const field of ['api', 'page', 's3', 'bucket', 'token']) {
        if (typeof ready[field] !== 'string' || ready[field] === '') {
          fail(`the ready file ${file} has no "${field}": ${JSON.stringify(ready)}`)
        }
      }
      return ready
    } catch (err) {
      if (err instanceof TestFailure) throw err
      // Not there yet, or still being written.
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  fail(`airlock dev wrote no ready file ${file} within ${READY_TIMEOUT_MS / 1000} s:\n${output}`)
}

async function stopServer(child) {
  if (child.exitCode !== null || child.signalCode !== null) return
  child.kill('SIGTERM')
  const exited = once(child, 'exit')
  const timer = new Promise((resolve) => setTimeout(resolve, STOP_TIMEOUT_MS, 'timeout'))
  if ((await Promise.race([exited, timer])) === 'timeout') {
    child.kill('SIGKILL')
    await exited
    fail(`airlock dev did not stop within ${STOP_TIMEOUT_MS / 1000} s of SIGTERM`)
  }
}

/** The upload's status straight from the API, to check the page against. */
async function apiStatus(ready, uploadId) {
  const response = await fetch(`${ready.api}/uploads/${encodeURIComponent(uploadId)}`, {
    headers: { authorization: `Bearer ${ready.token}` },
  })
  const body = await response.text()
  if (!response.ok) fail(`GET /uploads/${uploadId} answered ${response.status}: ${body}`)
  return JSON.parse(body)
}

/** Waits until the page shows the file in a final state; returns what the row says. */
async function settledRow(page, name) {
  const row = page.locator(`li[data-upload][data-name="${name}"]`)
  try {
    await page.waitForFunction(
      ({ name, finals }) => {
        const li = [...document.querySelectorAll('li[data-upload]')].find((r) => r.dataset.name === name)
        return li && (finals.includes(li.dataset.state) || li.dataset.state === 'error')
      },
      { name, finals: FINAL_STATES },
      { timeout: SETTLE_TIMEOUT_MS, polling: 250 },
    )
  } catch (err) {
    const shown = (await row.count()) > 0 ? await row.innerText() : '(no row for it)'
    fail(`${name} did not reach a final state within ${SETTLE_TIMEOUT_MS / 1000} s; the page shows:\n${shown}`)
  }
  return row.evaluate((li) => ({
    state: li.dataset.state,
    method: li.dataset.method,
    uploadId: li.dataset.uploadId,
    reason: li.querySelector('[data-field="reason"]')?.textContent ?? null,
    error: li.querySelector('[data-field="error"]')?.textContent ?? null,
    text: li.innerText,
  }))
}

function expectState(name, row, state) {
  if (row.state !== state) {
    fail(`${name}: expected ${state}, the page shows ${row.state}${row.error ? ` (${row.error})` : ''}:\n${row.text}`)
  }
}

async function run(tmp, cleanups) {
  if (!existsSync(binary)) fail(`no airlock binary at ${binary} (build it with cargo build -p airlock-cli, or set AIRLOCK_BIN)`)
  if (!existsSync(chromiumPath)) fail(`no Chromium at ${chromiumPath} (scripts/setup.sh chromium installs it, or set CHROMIUM)`)
  if (!existsSync(path.join(webDir, 'index.html'))) fail(`no page in ${webDir} (run scripts/build-web.sh)`)

  const eicarFile = path.join(tmp, 'eicar-readme.txt')
  await fs.writeFile(eicarFile, eicar())
  const largeFile = path.join(tmp, 'large-notes.txt')
  await writeTextFile(largeFile, LARGE_SIZE)

  const readyFile = path.join(tmp, 'ready.json')
  const output = new Tail()
  const child = spawn(
    binary,
    ['dev', '--data-dir', path.join(tmp, 'data'), '--api-port', '0', '--s3-port', '0',
      '--web-dir', webDir, '--ready-file', readyFile],
    { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] },
  )
  child.stdout.on('data', (d) => output.push(d))
  child.stderr.on('data', (d) => output.push(d))
  cleanups.push(() => stopServer(child))
  const spawned = await Promise.race([once(child, 'spawn').then(() => null), once(child, 'error').then(([e]) => e)])
  if (spawned) fail(`cannot start ${binary}: ${spawned.message}`)

  const ready = await waitForReadyFile(readyFile, child, output)
  console.log(`upload page test: airlock dev ready, page ${new URL(ready.page).origin}, bucket ${ready.s3}`)

  const browser = await chromium.launch({ executablePath: chromiumPath, headless: true })
  cleanups.push(() => browser.close())
  const page = await browser.newPage({ viewport: { width: 1100, height: 900 } })
  const pageErrors = []
  const consoleErrors = []
  page.on('pageerror', (err) => pageErrors.push(err.message))
  page.on('console', (msg) => {
    if (msg.type() === 'error') consoleErrors.push(msg.text())
  })
  // What the page asks the API to create, by file name.
  const creates = new Map()
  page.on('request', (request) => {
    if (request.method() === 'POST' && new URL(request.url()).pathname === '/uploads') {
      const body = JSON.parse(request.postData() ?? 'null')
      creates.set(body?.filename, { body, idempotencyKey: request.headers()['idempotency-key'] })
    }
  })
  const context = () =>
    [pageErrors.length ? `page errors:\n${pageErrors.join('\n')}` : '',
      consoleErrors.length ? `console errors:\n${consoleErrors.join('\n')}` : '',
      `airlock dev output (last lines):\n${output}`].filter(Boolean).join('\n')

  try {
    await page.goto(ready.page)
    try {
      await page.waitForSelector('body[data-ready="true"]', { timeout: 30_000 })
    } catch {
      const shown = await page.locator('#page-error').textContent()
      fail(`the page did not get ready: ${shown || '(no error shown)'}`)
    }

    // The photo as a photo, sent with one PUT; EICAR as an attachment in a POST form; the
    // large file as an attachment, which goes multipart whatever the single-request method.
    await page.selectOption('#purpose', 'photo')
    await page.selectOption('#single-method', 'put')
    await page.setInputFiles('#file-input', photoFixture)
    await page.selectOption('#purpose', 'attachment')
    await page.selectOption('#single-method', 'post')
    await page.setInputFiles('#file-input', [eicarFile, largeFile, emptyFixture])
    const listed = await page.locator('li[data-upload]').count()
    if (listed !== 4) {
      fail(`the page lists ${listed} files after picking 4: ${await page.locator('#page-error').textContent()}`)
    }
    await page.click('#upload-button')

    const photoName = path.basename(photoFixture)
    const photo = await settledRow(page, photoName)
    expectState(photoName, photo, 'READY')
    if (photo.method !== 'put') fail(`${photoName}: sent by ${photo.method}, expected put`)
    const variants = page.locator(`li[data-upload][data-name="${photoName}"] [data-variant] img`)
    const variantCount = await variants.count()
    if (variantCount === 0) fail(`${photoName}: READY but the page shows no variant:\n${photo.text}`)
    try {
      await page.waitForFunction(
        (name) => {
          const li = [...document.querySelectorAll('li[data-upload]')].find((r) => r.dataset.name === name)
          const images = [...li.querySelectorAll('[data-variant] img')]
          return images.length > 0 && images.every((img) => img.complete && img.naturalWidth > 0)
        },
        photoName,
        { timeout: IMAGE_TIMEOUT_MS, polling: 250 },
      )
    } catch {
      const states = await variants.evaluateAll((imgs) =>
        imgs.map((img) => `${img.closest('[data-variant]').dataset.variant}: complete=${img.complete} naturalWidth=${img.naturalWidth}`),
      )
      fail(`${photoName}: variant images did not load:\n${states.join('\n')}`)
    }
    const photoStatus = await apiStatus(ready, photo.uploadId)
    if (photoStatus.state !== 'READY' || (photoStatus.variants ?? []).length !== variantCount) {
      fail(`${photoName}: the API says ${photoStatus.state} with ${(photoStatus.variants ?? []).length} variants, the page shows READY with ${variantCount}`)
    }
    const sizes = await variants.evaluateAll((imgs) => imgs.map((img) => `${img.naturalWidth}x${img.naturalHeight}`))
    console.log(`ok: ${photoName} READY (put), ${variantCount} variants loaded: ${sizes.join(', ')}`)

    const eicarName = path.basename(eicarFile)
    const infected = await settledRow(page, eicarName)
    expectState(eicarName, infected, 'QUARANTINED')
    if (infected.reason !== 'infected') fail(`${eicarName}: reason shown is ${JSON.stringify(infected.reason)}, expected "infected"`)
    if (infected.method !== 'post') fail(`${eicarName}: sent by ${infected.method}, expected post`)
    const eicarStatus = await apiStatus(ready, infected.uploadId)
    if (eicarStatus.state !== 'QUARANTINED' || eicarStatus.reason !== 'infected') {
      fail(`${eicarName}: the API says ${eicarStatus.state} (${eicarStatus.reason}), the page shows QUARANTINED (infected)`)
    }
    if ((await page.locator(`li[data-upload][data-name="${eicarName}"] img`).count()) !== 0) {
      fail(`${eicarName}: a quarantined upload shows an image`)
    }
    console.log(`ok: ${eicarName} QUARANTINED (post), reason infected`)

    const largeName = path.basename(largeFile)
    const large = await settledRow(page, largeName)
    expectState(largeName, large, 'READY')
    if (large.method !== 'multipart') fail(`${largeName}: sent by ${large.method}, expected multipart`)
    const sizeShown = await page.locator(`li[data-upload][data-name="${largeName}"] [data-field="size"]`).textContent()
    if (!sizeShown.includes(`(${LARGE_SIZE} bytes)`)) fail(`${largeName}: size shown is "${sizeShown}", expected ${LARGE_SIZE} bytes`)
    const largeStatus = await apiStatus(ready, large.uploadId)
    if (largeStatus.state !== 'READY' || largeStatus.size !== LARGE_SIZE) {
      fail(`${largeName}: the API says ${largeStatus.state} with size ${largeStatus.size}, expected READY with ${LARGE_SIZE}`)
    }
    console.log(`ok: ${largeName} READY (multipart), ${LARGE_SIZE} bytes`)

    // An empty file: the API refuses it, and the page shows the problem's own detail.
    const emptyName = path.basename(emptyFixture)
    const refused = await settledRow(page, emptyName)
    expectState(emptyName, refused, 'error')
    const emptyCreate = creates.get(emptyName)
    if (!emptyCreate) fail(`${emptyName}: the page never asked the API to create it`)
    const direct = await fetch(`${ready.api}/uploads`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ready.token}`, 'content-type': 'application/json' },
      body: JSON.stringify(emptyCreate.body),
    })
    const problem = await direct.json()
    if (direct.ok || typeof problem.detail !== 'string') {
      fail(`${emptyName}: expected the API to refuse it with a problem, got ${direct.status} ${JSON.stringify(problem)}`)
    }
    if (!refused.error?.includes(problem.detail)) {
      fail(`${emptyName}: the page shows ${JSON.stringify(refused.error)}, not the API's detail ${JSON.stringify(problem.detail)}`)
    }
    console.log(`ok: ${emptyName} refused, the page shows: ${refused.error}`)

    // What the page asked for: the method, the size, the SHA-256 of single-request uploads,
    // and a key of its own per file so a retried create is the same upload.
    const sha256 = async (file) => createHash('sha256').update(await fs.readFile(file)).digest('hex')
    const expected = [
      [photoFixture, 'photo', 'image/jpeg', 'put', await sha256(photoFixture)],
      [eicarFile, 'attachment', 'text/plain', 'post', await sha256(eicarFile)],
      [largeFile, 'attachment', 'text/plain', 'multipart', undefined],
    ]
    const keys = new Set()
    for (const [file, purpose, contentType, method, digest] of expected) {
      const name = path.basename(file)
      const { size } = await fs.stat(file)
      const create = creates.get(name)
      const got = create?.body
      if (!got || got.purpose !== purpose || got.contentType !== contentType || got.method !== method
        || got.size !== size || got.sha256 !== digest) {
        fail(`${name}: the page asked for ${JSON.stringify(got)}, expected purpose ${purpose}, ${contentType}, ${method}, ${size} bytes, sha256 ${digest}`)
      }
      if (!create.idempotencyKey || keys.has(create.idempotencyKey)) {
        fail(`${name}: Idempotency-Key ${JSON.stringify(create.idempotencyKey)} missing or shared with another file`)
      }
      keys.add(create.idempotencyKey)
    }
    console.log('ok: create requests carry the method, size, SHA-256 (single requests) and one Idempotency-Key per file')

    // Cancelling a multipart upload in flight: its part requests are held back until the
    // Cancel button is pressed, so the cancel always lands mid-upload. The page tells the
    // API, which aborts the multipart upload and ends the intent EXPIRED.
    const config = await (await fetch(`${ready.api}/config`)).json()
    const cancelFile = path.join(tmp, 'cancelled-notes.txt')
    await writeTextFile(cancelFile, config.multipartThreshold)
    const cancelName = path.basename(cancelFile)
    const s3Origin = new URL(ready.s3).origin
    const held = []
    let partHeld
    const firstPartHeld = new Promise((resolve) => {
      partHeld = resolve
    })
    await page.route(
      (url) => url.origin === s3Origin && url.searchParams.has('partNumber'),
      (route) => {
        held.push(route)
        partHeld()
      },
    )
    await page.selectOption('#purpose', 'attachment')
    await page.setInputFiles('#file-input', cancelFile)
    await page.click('#upload-button')
    const heldTimeout = new Promise((resolve) => setTimeout(resolve, 30_000, 'timeout'))
    if ((await Promise.race([firstPartHeld, heldTimeout])) === 'timeout') {
      fail(`${cancelName}: no part upload started within 30 s`)
    }
    await page.click(`li[data-upload][data-name="${cancelName}"] [data-action="cancel"]`)
    const cancelled = await settledRow(page, cancelName)
    for (const route of held) await route.abort().catch(() => {})
    await page.unrouteAll({ behavior: 'ignoreErrors' })
    expectState(cancelName, cancelled, 'EXPIRED')
    if (cancelled.method !== 'multipart') fail(`${cancelName}: sent by ${cancelled.method}, expected multipart`)
    const cancelStatus = await apiStatus(ready, cancelled.uploadId)
    if (cancelStatus.state !== 'EXPIRED') fail(`${cancelName}: the API says ${cancelStatus.state}, expected EXPIRED`)
    console.log(`ok: ${cancelName} cancelled mid-upload (${held.length} part requests held), EXPIRED`)

    if (pageErrors.length > 0) fail(`the page threw:\n${pageErrors.join('\n')}`)

    await fs.mkdir(path.dirname(screenshotPath), { recursive: true })
    await page.screenshot({ path: screenshotPath, fullPage: true })
    console.log(`upload page test: screenshot saved to ${path.relative(root, screenshotPath)}`)
  } catch (err) {
    if (err instanceof TestFailure) err.message += `\n${context()}`
    throw err
  }
}

/** What must be undone however the run ends: the browser, the server, the temp files. */
const teardown = { tmp: null, cleanups: [] }

async function tearDown() {
  let failure = null
  // Browser first, then the server (its stop is checked), then the files.
  for (const cleanup of teardown.cleanups.splice(0).reverse()) {
    try {
      await cleanup()
    } catch (err) {
      failure ??= err
    }
  }
  if (teardown.tmp) await fs.rm(teardown.tmp, { recursive: true, force: true })
  teardown.tmp = null
  return failure
}

async function main() {
  teardown.tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'airlock-upload-page-'))
  let failure = null
  try {
    await run(teardown.tmp, teardown.cleanups)
  } catch (err) {
    failure = err
  }
  const teardownFailure = await tearDown()
  failure ??= teardownFailure
  if (failure) {
    console.error(`upload page test: FAILED: ${failure instanceof TestFailure ? failure.message : failure.stack}`)
    process.exitCode = 1
  } else {
    console.log('upload page test: 6 passed, 0 failed')
  }
}

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, async () => {
    console.error(`upload page test: interrupted by ${signal}; stopping airlock dev and removing temp files`)
    await tearDown().catch(() => {})
    process.exit(130)
  })
}

await main()
