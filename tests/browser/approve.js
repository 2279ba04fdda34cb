// A person at the approval page: opens it, is sent to sign in, signs in with a name and
// password, waits for the held call of TOOL to appear, optionally saves a screenshot, and
// approves it. Exits non-zero (with the page's text) otherwise.
//
//   node approve.js PAGE_URL TOOL NAME PASSWORD [SCREENSHOT.png]
const { chromium } = require('playwright-core');

async function main() {
  const [url, tool, name, password, screenshot] = process.argv.slice(2);
  if (!url || !tool || !name || !password) {
    throw new Error('usage: approve.js PAGE_URL TOOL NAME PASSWORD [SCREENSHOT]');
  }
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_BIN || '/usr/bin/chromium',
    args: ['--no-sandbox'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1100, height: 700 } });
    await page.goto(url);
    // Not signed in: the page sends the person to sign in, and back once they have.
    await page.waitForURL(/\/login/, { timeout: 10000 });
    await page.fill('#name', name);
    await page.fill('#password', password);
    await Promise.all([page.waitForURL((u) => !u.pathname.startsWith('/login'), { timeout: 10000 }), page.click('#sign-in')]);
    const who = await page.textContent('#approver');
    if (who !== name) throw new Error(`signed in as ${JSON.stringify(who)}, not ${name}`);
    // Live updates: the call is held *after* the page loaded, so it must appear without a reload.
    const row = page.locator('.request', { hasText: tool }).first();
    await row.waitFor({ timeout: 15000 });
    await row.locator('input.reason').fill('looks right');
    if (screenshot) await page.screenshot({ path: screenshot });
    await row.locator('button.approve').click();
    // Decided: the row leaves the pending list.
    await page.locator('.request', { hasText: tool }).first().waitFor({ state: 'detached', timeout: 10000 });
    console.log('approved');
  } catch (error) {
    const pages = browser.contexts().flatMap((c) => c.pages());
    const text = pages.length ? await pages[0].textContent('body').catch(() => '') : '';
    console.error(`${error.message}\npage text:\n${text}`);
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
}

main().catch((error) => { console.error(error); process.exit(1); });
