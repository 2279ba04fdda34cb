// A person at the approval page: waits for the held call of TOOL to appear, optionally saves a
// screenshot, types their name and approves it. Exits non-zero (with the page's text) otherwise.
//
//   node approve.js PAGE_URL TOOL APPROVER [SCREENSHOT.png]
const { chromium } = require('playwright-core');

async function main() {
  const [url, tool, approver, screenshot] = process.argv.slice(2);
  if (!url || !tool || !approver) throw new Error('usage: approve.js PAGE_URL TOOL APPROVER [SCREENSHOT]');
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_BIN || '/usr/bin/chromium',
    args: ['--no-sandbox'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1100, height: 700 } });
    await page.goto(url);
    // Live updates: the call is held *after* the page loaded, so it must appear without a reload.
    const row = page.locator('.request', { hasText: tool }).first();
    await row.waitFor({ timeout: 15000 });
    await page.fill('#approver', approver);
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
