// Browser test of the quarantine console: quarantines two uploads with `airlock replay` (a
// JPEG declared as a PNG under the filename `<img src=x onerror=alert(1)>.png`, and the EICAR
// test file), starts `airlock console` with a tokens file (alice, admin; bob, reviewer) on a
// free loopback port, and in headless Chromium:
//
// - bob signs in, filters the list, opens the hostile item (its name shows as text: no
//   script or dialog runs, no <img> appears, nothing fetches its source), releases the EICAR
//   upload with a reason (the rescan finds it again: refused, it stays), and is refused, with
//   a message, when he posts a purge (admin only), and when he posts without the form's
//   token;
// - alice signs in, forces the release of the hostile item, exports the EICAR upload (a zip
//   download) and purges it, and sees her and bob's actions in the audit trail; then signs
//   out;
// - `airlock dev` over the same data serves the console under /console/: sign-in and list.
//
// Saves screenshots of the list and the item page (AIRLOCK_SCREENSHOT_DIR, default target/;
// set it to docs/ to refresh docs/console-list.png and docs/console-item.png).
//
// Environment: AIRLOCK_BIN (default target/debug/airlock), CHROMIUM (default
// /usr/bin/chromium).

import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
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
const ALICE = 'alice-admin-token-0001'
const BOB = 'bob-reviewer-token-0002'
// Guards against a hang, not measurements.
const START_TIMEOUT_MS = 120_000
const STOP_TIMEOUT_MS = 20_000

class TestFailure extends Error {}
const fail = (message) => {
  throw new TestFailure(message)
}

/** The EICAR test string, assembled here so that it never sits whole in the repository. */
function eicar() {
  return ['X5O!P%@AP[4\\PZX54(P^)7CC)7}$', 'EICAR-STANDARD-', 'ANTIVIRUS-', 'TEST-FILE!$H+H*'].join('')
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

/** Starts `args`, and resolves with the child and the first match of `pattern` on stdout. */
async function startAndWait(args, pattern, env = {}) {
  const inherited = { ...process.env }
  delete inherited.AIRLOCK_CONSOLE_TOKENS
  delete inherited.AIRLOCK_CONSOLE_TOKENS_FILE
  const child = spawn(binary, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], env: { ...inherited, ...env } })
  let seen = ''
  child.stderr.on('data', (chunk) => {
    seen += chunk
  })
  const match = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new TestFailure(`${args[0]} did not start: ${seen}`)), START_TIMEOUT_MS)
    child.stdout.on('data', (chunk) => {
      seen += chunk
      const found = seen.match(pattern)
      if (found) {
        clearTimeout(timer)
        resolve(found)
      }
    })
    child.on('exit', (code) => reject(new TestFailure(`${args[0]} exited (${code}): ${seen}`)))
  })
  return { child, match }
}

async function stop(child, signal) {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = once(child, 'exit')
  child.kill(signal)
  const timer = new Promise((resolve) => setTimeout(resolve, STOP_TIMEOUT_MS, 'timeout'))
  if ((await Promise.race([exited, timer])) === 'timeout') {
    child.kill('SIGKILL')
    await exited
    fail(`airlock did not stop within ${STOP_TIMEOUT_MS / 1000} s of ${signal}`)
  }
}

/** A browser context whose page signs in at `base` with `token`; records dialogs and
 * requests. */
async function signedIn(browser, base, token) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, acceptDownloads: true })
  const page = await context.newPage()
  const seen = { dialogs: [], requests: [] }
  page.on('dialog', (dialog) => {
    seen.dialogs.push(dialog.message())
    dialog.dismiss()
  })
  page.on('request', (request) => seen.requests.push(request.url()))
  await page.goto(base)
  if (!page.url().endsWith('/signin')) fail(`an unsigned visit to ${base} ended at ${page.url()}, not the sign-in`)
  await page.fill('input[name=token]', token)
  await Promise.all([page.waitForURL((url) => !url.pathname.endsWith('/signin')), page.click('form.signin button')])
  const cookies = await context.cookies()
  const session = cookies.find((c) => c.name.startsWith('airlock-console-'))
  if (!session || !session.httpOnly || session.sameSite !== 'Strict') {
    fail(`the session cookie is not HttpOnly and SameSite=Strict: ${JSON.stringify(cookies)}`)
  }
  return { context, page, seen, session }
}

async function openItem(page, base, query) {
  await page.goto(`${base}?${query}`)
  await Promise.all([page.waitForURL(/\/item\?key=/), page.locator('table.items tbody tr a').first().click()])
}

/** Posts a form with the page's session (and its Origin): status and text. */
async function postAs(context, base, action, fields) {
  const origin = new URL(base).origin
  const response = await context.request.post(new URL(action, base).href, {
    form: fields,
    headers: { origin },
    maxRedirects: 0,
  })
  return { status: response.status(), text: await response.text() }
}

async function standaloneConsole(browser, dataDir, scratch) {
  const tokensFile = path.join(scratch, 'console-tokens')
  await fs.writeFile(tokensFile, `# role name token\nadmin alice ${ALICE}\nreviewer bob ${BOB}\n`)
  const { child, match } = await startAndWait(
    ['console', '--data-dir', dataDir, '--listen', '127.0.0.1:0', '--tokens-file', tokensFile],
    /on (http:\/\/127\.0\.0\.1:\d+\/)/,
  )
  const base = match[1]
  try {
    // Bob, a reviewer.
    const bob = await signedIn(browser, base, BOB)
    const page = bob.page
    const all = await page.locator('table.items tbody tr').count()
    if (all !== 2) fail(`the list shows ${all} rows, not 2`)
    if (!(await page.locator('header .who').textContent()).includes('bob (reviewer)')) fail('the header does not name bob')
    await fs.mkdir(shots, { recursive: true })
    await page.screenshot({ path: path.join(shots, 'console-list.png'), fullPage: true })
    await page.fill('input[name=tenant]', 'acme')
    await page.selectOption('select[name=reason]', 'type-mismatch')
    await Promise.all([page.waitForURL(/tenant=acme/), page.click('form.filters button[type=submit]')])
    const rows = page.locator('table.items tbody tr')
    if ((await rows.count()) !== 1) fail(`the filter shows ${await rows.count()} rows, not 1`)
    const nameCell = await rows.first().locator('td.name').textContent()
    if (nameCell !== HOSTILE) fail(`the filename cell reads ${JSON.stringify(nameCell)}`)

    // The hostile item: text, not markup. A reviewer gets no purge and no force.
    await Promise.all([page.waitForURL(/\/item\?key=/), rows.first().locator('a').click()])
    const title = await page.locator('main h1').textContent()
    if (title !== HOSTILE) fail(`the item's title reads ${JSON.stringify(title)}`)
    if ((await page.locator('main img').count()) !== 0) fail('the filename became an <img>')
    if (bob.seen.requests.some((u) => new URL(u).pathname.endsWith('/x'))) {
      fail('the browser fetched the hostile <img> source')
    }
    if ((await page.locator('form.purge').count()) !== 0) fail('a reviewer is offered a purge')
    if ((await page.locator('input[name=force]').count()) !== 0) fail('a reviewer is offered a forced release')
    await page.screenshot({ path: path.join(shots, 'console-item.png'), fullPage: true })
    const hostileItem = page.url()
    const hostileKey = await page.locator('form.release input[name=key]').getAttribute('value')
    const bobToken = await page.locator('form.release input[name=csrf]').getAttribute('value')

    // Release of the EICAR upload, with a reason: the rescan finds it again, it stays.
    await openItem(page, base, 'reason=infected')
    const eicarItem = page.url()
    const eicarKey = await page.locator('form.release input[name=key]').getAttribute('value')
    await page.click('form.release button[type=submit]')
    if (page.url() !== eicarItem) fail('a release without a reason was submitted')
    await page.fill('form.release textarea[name=why]', 'the user says it is a test file')
    await Promise.all([page.waitForLoadState('load'), page.click('form.release button[type=submit]')])
    const refused = await page.locator('p.problem').textContent()
    if (!refused.includes('stays quarantined') || !refused.includes('infected')) {
      fail(`after releasing EICAR the page says ${JSON.stringify(refused)}`)
    }

    // What a reviewer may not do, and a post without the form's token: refused.
    const purge = await postAs(bob.context, base, 'purge', { key: hostileKey, why: 'mine to purge', csrf: bobToken })
    if (purge.status !== 403 || !purge.text.includes('purging needs the admin role; bob is signed in as a reviewer')) {
      fail(`a reviewer's purge got ${purge.status}: ${purge.text}`)
    }
    const force = await postAs(bob.context, base, 'release', { key: hostileKey, why: 'forced', force: '1', csrf: bobToken })
    if (force.status !== 403 || !force.text.includes('a forced release needs the admin role')) {
      fail(`a reviewer's forced release got ${force.status}: ${force.text}`)
    }
    const tokenless = await postAs(bob.context, base, 'release', { key: eicarKey, why: 'no token' })
    if (tokenless.status !== 403 || !tokenless.text.includes('token is missing or stale')) {
      fail(`a post without the token got ${tokenless.status}: ${tokenless.text}`)
    }
    if (bob.seen.dialogs.length) fail(`a script ran: ${bob.seen.dialogs.join(', ')}`)

    // Alice, an admin: a forced release, an export, a purge.
    const alice = await signedIn(browser, base, ALICE)
    const admin = alice.page
    await admin.goto(hostileItem)
    await admin.check('form.release input[name=force]')
    await admin.fill('form.release textarea[name=why]', 'a JPEG, as the user says; checked by hand')
    await Promise.all([admin.waitForURL(/done=released/), admin.click('form.release button[type=submit]')])
    await admin.goto(eicarItem)
    await admin.fill('form.export textarea[name=why]', 'for the malware lab')
    const [download] = await Promise.all([admin.waitForEvent('download'), admin.click('form.export button[type=submit]')])
    if (!/^[0-9a-f]{64}\.zip$/.test(download.suggestedFilename())) {
      fail(`the export is named ${download.suggestedFilename()}`)
    }
    const zip = await fs.readFile(await download.path())
    if (zip.subarray(0, 4).toString('latin1') !== 'PK\x03\x04') fail('the export is not a zip')
    if (zip.includes(Buffer.from(eicar()))) fail('the export holds the sample unencrypted')
    await admin.goto(eicarItem)
    await admin.click('form.purge button[type=submit]')
    if (admin.url() !== eicarItem) fail('a purge without a reason was submitted')
    await admin.fill('form.purge textarea[name=why]', 'EICAR test file, not worth keeping')
    await Promise.all([admin.waitForURL(/done=purged/), admin.click('form.purge button[type=submit]')])
    const done = await admin.locator('p.done').textContent()
    if (!done.includes('tombstone')) fail(`after the purge the page says ${JSON.stringify(done)}`)

    // The audit trail: everyone's actions under their names.
    await admin.goto(`${base}audit`)
    const verify = await admin.locator('p.verify').textContent()
    if (!verify.startsWith('Chain intact: 4 entries')) fail(`the audit page says ${JSON.stringify(verify)}`)
    const entries = await admin.locator('table.audit tbody tr').allTextContents()
    for (const [who, action] of [
      ['bob', 'release-refused'],
      ['alice', 'release'],
      ['alice', 'export'],
      ['alice', 'purge'],
    ]) {
      if (!entries.some((row) => row.includes(who) && row.includes(action))) {
        fail(`no audit entry of ${who} doing ${action}: ${entries.join('\n')}`)
      }
    }
    await Promise.all([admin.waitForURL(/\/signin$/), admin.click('form.signout button')])
    await admin.goto(base)
    if (!admin.url().endsWith('/signin')) fail('signed out, the console still shows the list')
    if (alice.seen.dialogs.length) fail(`a script ran: ${alice.seen.dialogs.join(', ')}`)
    await bob.context.close()
    await alice.context.close()
  } finally {
    await stop(child, 'SIGINT')
  }
}

/** `airlock dev` over the same data serves the console under /console/. */
async function devConsole(browser, dataDir, scratch) {
  const readyFile = path.join(scratch, 'dev-ready.json')
  const { child } = await startAndWait(
    [
      'dev',
      '--data-dir',
      dataDir,
      '--bucket',
      'airlock-uploads',
      '--api-port',
      '0',
      '--s3-port',
      '0',
      '--ready-file',
      readyFile,
    ],
    /console\s+(http:\S+)/,
    { AIRLOCK_CONSOLE_TOKENS: `reviewer bob ${BOB}` },
  )
  try {
    const ready = JSON.parse(await fs.readFile(readyFile, 'utf8'))
    if (!/^http:\/\/127\.0\.0\.1:\d+\/console\/$/.test(ready.console)) fail(`the ready file's console is ${ready.console}`)
    if ('consoleToken' in ready) fail('a console token was generated although one was configured')
    const bob = await signedIn(browser, ready.console, BOB)
    if (bob.session.path !== '/console/') fail(`the dev console's cookie has path ${bob.session.path}`)
    const statuses = await bob.page.locator('table.items tbody td.status').allTextContents()
    if (statuses.sort().join(',') !== 'purged,released') fail(`the dev console lists ${statuses}`)
    await bob.page.goto(`${ready.console}audit`)
    const verify = await bob.page.locator('p.verify').textContent()
    if (!verify.startsWith('Chain intact: 4 entries')) fail(`the dev console's audit page says ${JSON.stringify(verify)}`)
    await bob.context.close()
  } finally {
    await stop(child, 'SIGTERM')
  }
}

async function main() {
  const scratch = await fs.mkdtemp(path.join(os.tmpdir(), 'airlock-console-'))
  const dataDir = path.join(scratch, 'data')
  let browser
  try {
    await seed(dataDir, scratch)
    browser = await chromium.launch({ executablePath: chromiumPath, headless: true })
    await standaloneConsole(browser, dataDir, scratch)
    await devConsole(browser, dataDir, scratch)
    console.log(`console browser test passed; screenshots in ${shots}`)
  } finally {
    await browser?.close()
    await fs.rm(scratch, { recursive: true, force: true })
  }
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
