// Browser test of `airlock console`: quarantines two uploads with `airlock replay` (a JPEG
// declared as a PNG under the filename `<img src=x onerror=alert(1)>.png`, and the EICAR test
// file), starts the console on a free loopback port, and in headless Chromium filters the
// list, opens the hostile item (its name shows as text, no script or dialog runs, no <img>
// appears), tries a purge without a reason (the form refuses), purges with one and sees the
// tombstone and the audit entry. Posts without the token and from another origin are
// refused. Saves screenshots of the list and the item page (AIRLOCK_SCREENSHOT_DIR, default
// target/; set it to docs/ to refresh docs/console.png and docs/console-item.png).
//
// Environment: AIRLOCK_BIN (default target/debug/airlock), CHROMIUM (default
// /usr/bin/chromium).

import { spawn, spawnSync } from 'node:child_process'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium } from 'playwright-core'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
const binary = path.resolve(root, process.env.AIRLOCK_BIN ?? 'target/debug/airlock')
const chromiumPath = process.env.CHROMIUM ?? '/usr/bin/chromium'
const shots = path.resolve(root, process.env.AIRLOCK_SCREENSHOT_DIR ?? 'target')
const HOSTILE = '<img src=x onerror=alert(1)>.png'
// Guards against a hang, not a measurement.
const START_TIMEOUT_MS = 60_000

const fail = (message) => {
  throw new Error(message)
}

async function seed(dataDir, scratch) {
  const caseFile = path.join(scratch, 'hostile-name.json')
  await fs.writeFile(
    caseFile,
    JSON.stringify({
      description: 'JPEG bytes declared as a PNG, under a filename that is markup',
      intent: {
        id: '01937a3b-4b40-7128-801a-1a2b3c4e7001',
        tenant: 'acme',
        purpose: 'avatar',
        declaredType: 'image/png',
        filename: HOSTILE,
        uploader: 'user-7',
      },
      object: { path: path.join(root, 'fixtures', 'objects', 'disguised-as-png.png') },
    }),
  )
  const replay = spawnSync(
    binary,
    ['replay', '--data-dir', dataDir, '--delay-scale', '0.001', caseFile, 'fixtures/cases/eicar.json'],
    { cwd: root, encoding: 'utf8' },
  )
  if (replay.status !== 0) fail(`airlock replay failed: ${replay.stdout}${replay.stderr}`)
}

async function startConsole(dataDir) {
  const child = spawn(binary, ['console', '--data-dir', dataDir, '--listen', '127.0.0.1:0', '--reviewer', 'alice'], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  const url = await new Promise((resolve, reject) => {
    let seen = ''
    const timer = setTimeout(() => reject(new Error(`the console did not start: ${seen}`)), START_TIMEOUT_MS)
    child.stdout.on('data', (chunk) => {
      seen += chunk
      const match = seen.match(/on (http:\/\/127\.0\.0\.1:\d+)/)
      if (match) {
        clearTimeout(timer)
        resolve(match[1])
      }
    })
    child.on('exit', (code) => reject(new Error(`the console exited (${code}): ${seen}`)))
  })
  return { child, url }
}

async function main() {
  const scratch = await fs.mkdtemp(path.join(os.tmpdir(), 'airlock-console-'))
  const dataDir = path.join(scratch, 'data')
  await seed(dataDir, scratch)
  const { child, url } = await startConsole(dataDir)
  let browser
  try {
    browser = await chromium.launch({ executablePath: chromiumPath, headless: true })
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } })
    const dialogs = []
    page.on('dialog', (dialog) => {
      dialogs.push(dialog.message())
      dialog.dismiss()
    })
    const requests = []
    page.on('request', (request) => requests.push(request.url()))

    // The list, then filtered through its form.
    await page.goto(`${url}/`)
    const all = await page.locator('table.items tbody tr').count()
    if (all !== 2) fail(`the list shows ${all} rows, not 2`)
    await page.fill('input[name=tenant]', 'acme')
    await page.selectOption('select[name=reason]', 'type-mismatch')
    await page.click('form.filters button[type=submit]')
    await page.waitForURL(/tenant=acme/)
    const rows = page.locator('table.items tbody tr')
    if ((await rows.count()) !== 1) fail(`the filter shows ${await rows.count()} rows, not 1`)
    const nameCell = await rows.first().locator('td.name').textContent()
    if (nameCell !== HOSTILE) fail(`the filename cell reads ${JSON.stringify(nameCell)}`)
    await fs.mkdir(shots, { recursive: true })
    await page.goto(`${url}/`)
    await page.screenshot({ path: path.join(shots, 'console.png'), fullPage: true })

    // The hostile item: text, not markup.
    await page.goto(`${url}/?tenant=acme`)
    await page.locator('table.items tbody tr a').first().click()
    await page.waitForURL(/\/item\?key=/)
    const title = await page.locator('main h1').textContent()
    if (title !== HOSTILE) fail(`the item's title reads ${JSON.stringify(title)}`)
    if ((await page.locator('main img').count()) !== 0) fail('the filename became an <img>')
    if (requests.some((u) => u.endsWith('/x'))) fail('the browser fetched the hostile <img> source')
    await page.screenshot({ path: path.join(shots, 'console-item.png'), fullPage: true })
    const itemUrl = page.url()

    // Purge: refused by the form without a reason, done with one.
    await page.click('form.purge button[type=submit]')
    if (page.url() !== itemUrl) fail('a purge without a reason was submitted')
    await page.fill('form.purge textarea[name=why]', 'disguised upload, not worth keeping')
    await Promise.all([page.waitForURL(/done=purged/), page.click('form.purge button[type=submit]')])
    const done = await page.locator('p.done').textContent()
    if (!done.includes('tombstone')) fail(`after the purge the page says ${JSON.stringify(done)}`)
    await page.goto(`${url}/audit`)
    const verify = await page.locator('p.verify').textContent()
    if (!verify.startsWith('Chain intact: 1 entries')) fail(`the audit page says ${JSON.stringify(verify)}`)
    const audit = await page.locator('table.audit tbody').textContent()
    if (!audit.includes('alice') || !audit.includes('disguised upload, not worth keeping')) {
      fail(`the audit entry is missing: ${audit}`)
    }

    // Forged posts: without the token, and with it from another origin.
    await page.goto(`${url}/?reason=infected`)
    await page.locator('table.items tbody tr a').first().click()
    await page.waitForURL(/\/item\?key=/)
    const key = await page.locator('form.purge input[name=key]').getAttribute('value')
    const token = await page.locator('form.purge input[name=csrf]').getAttribute('value')
    for (const [origin, fields] of [
      [url, { key, why: 'forged' }],
      ['http://attacker.example', { key, why: 'forged', csrf: token }],
    ]) {
      const response = await fetch(`${url}/purge`, {
        method: 'POST',
        headers: { origin, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams(fields),
        redirect: 'manual',
      })
      if (response.status !== 403) fail(`a forged purge from ${origin} got ${response.status}`)
    }
    if (dialogs.length) fail(`a script ran: ${dialogs.join(', ')}`)
    console.log(`console browser test passed; screenshots in ${shots}`)
  } finally {
    child.kill('SIGINT')
    await browser?.close()
    await fs.rm(scratch, { recursive: true, force: true })
  }
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
