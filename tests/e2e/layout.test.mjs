// End-to-end tests of the page's layout, measured through bounding boxes in headless Chromium:
// at a phone's (390 × 844, also 320 wide), a tablet's (768 × 1024) and a desktop's (1280 × 800)
// size, and the `?embed=1` view in a 700 × 600 iframe on another site. Each writes a round and
// checks that the first candidate card is then inside the viewport, that the header is one line
// high, that nothing sticks out of the page sideways and that every touch target is at least
// 44 px; the reader's settings (dark scheme, reduced motion, a larger font) are emulated.
// Screenshots go to $E2E_OUT/layout/ (the README shows phone.png and embed.png, copied to
// docs/screenshots/). Run by tests/e2e/run.sh, which passes E2E_URL, E2E_MODELS and E2E_OUT.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { byTestId, candidatesReady, cardText, launchChromium, modelReady, storyIs, watch, writeEmbedder } from './lib.mjs';

const BASE = process.env.E2E_URL;
const MODELS = process.env.E2E_MODELS;
const OUT = join(process.env.E2E_OUT ?? 'target/e2e', 'layout');
if (!BASE || !MODELS) throw new Error('E2E_URL and E2E_MODELS must be set: run tests/e2e/run.sh');
mkdirSync(OUT, { recursive: true });

const SLOW = 120_000;
const TEST_TIMEOUT = 5 * SLOW;
/** The smallest touch target, in CSS px (2.75rem at the default font size). */
const TOUCH = 44;

let browser;

before(async () => {
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
});

/** A fresh context of `options` (viewport, touch, media features) and a watched page in it. */
async function freshTab(options) {
  const context = await browser.newContext({ deviceScaleFactor: 1, ...options });
  context.setDefaultTimeout(SLOW);
  const tab = await context.newPage();
  const problems = [];
  watch(tab, problems);
  return { context, tab, problems };
}

/**
 * What the layout checks need, measured inside `target` (a page or a frame): the elements
 * sticking out of the page sideways, the header's items and texts that are not on one line, the
 * visible touch targets smaller than TOUCH, the first candidate card's box and the window's size.
 */
function measure(target) {
  return target.evaluate((touch) => {
    const visible = (e) => e.getClientRects().length > 0 && getComputedStyle(e).visibility !== 'hidden';
    const name = (e) => {
      const id = e.getAttribute('data-testid');
      return id ? `[data-testid=${id}]` : `${e.tagName.toLowerCase()}${e.className ? `.${String(e.className).trim().replace(/\s+/g, '.')}` : ''}`;
    };
    const width = document.documentElement.clientWidth;
    const overflowing = [...document.body.querySelectorAll('*')]
      .filter(visible)
      .filter((e) => {
        const box = e.getBoundingClientRect();
        return box.left < -0.5 || box.right > width + 0.5;
      })
      .map((e) => `${name(e)} (${e.getBoundingClientRect().left.toFixed(0)}–${e.getBoundingClientRect().right.toFixed(0)})`);

    // The header: its items side by side in one row, each text one line high, and the header
    // no taller than its tallest item.
    const header = document.querySelector('header');
    const items = [...header.children].filter(visible).map((e) => [name(e), e.getBoundingClientRect()]);
    const notInRow = items
      .filter(([, a]) => items.some(([, b]) => a.top + a.height / 2 < b.top || a.top + a.height / 2 > b.bottom))
      .map(([n]) => n);
    const lineHeight = (e) => {
      const style = getComputedStyle(e);
      return style.lineHeight === 'normal' ? 1.3 * parseFloat(style.fontSize) : parseFloat(style.lineHeight);
    };
    const multiLine = [header.querySelector('h1'), ...header.querySelectorAll('.status > *')]
      .filter(visible)
      .filter((e) => e.getClientRects().length > 1 || e.getBoundingClientRect().height > 1.5 * lineHeight(e))
      .map(name);
    const style = getComputedStyle(header);
    const headerBox = header.getBoundingClientRect();
    const tallest = Math.max(...items.map(([, box]) => box.height));
    const headerExtra = headerBox.height - tallest - parseFloat(style.paddingTop) - parseFloat(style.paddingBottom);

    const small = [...document.querySelectorAll('button, a[href], select, input, textarea, summary, [role="button"], .card')]
      .filter(visible)
      .filter((e) => {
        const box = e.getBoundingClientRect();
        return box.width < touch - 0.5 || box.height < touch - 0.5;
      })
      .map((e) => `${name(e)} ${e.getBoundingClientRect().width.toFixed(0)}×${e.getBoundingClientRect().height.toFixed(0)}`);

    const card = document.querySelector('[data-testid="candidate-1"]').getBoundingClientRect();
    return {
      overflowing,
      scrollWidth: document.documentElement.scrollWidth,
      width,
      height: window.innerHeight,
      notInRow,
      multiLine,
      headerExtra,
      headerHeight: headerBox.height,
      small,
      card: { top: card.top, bottom: card.bottom, left: card.left, right: card.right, height: card.height },
    };
  }, TOUCH);
}

/** Asserts the checks every layout passes: nothing sideways out of the page, a one-line header,
 * touch targets of TOUCH px at least. */
function assertLayout(m, where) {
  assert.deepEqual(m.overflowing, [], `${where}: elements stick out of the page sideways`);
  assert.ok(m.scrollWidth <= m.width, `${where}: the page scrolls sideways (${m.scrollWidth} > ${m.width})`);
  assert.deepEqual(m.notInRow, [], `${where}: header items not in one row`);
  assert.deepEqual(m.multiLine, [], `${where}: header texts on more than one line`);
  assert.ok(m.headerExtra <= 1, `${where}: the header (${m.headerHeight} px) is taller than one row`);
  assert.deepEqual(m.small, [], `${where}: touch targets under ${TOUCH} px`);
}

/** Waits until the first candidate card is inside `target`'s viewport (a smooth scroll may still
 * be under way when the round ends), then asserts it through its bounding box: whole when it fits
 * the window, else from its top. */
async function assertFirstCardInView(target, where) {
  await target
    .waitForFunction(
      () => {
        const box = document.querySelector('[data-testid="candidate-1"]').getBoundingClientRect();
        const fits = box.height <= window.innerHeight;
        return box.top >= 0 && (fits ? box.bottom <= window.innerHeight : box.top < window.innerHeight / 2);
      },
      null,
      { timeout: 10_000, polling: 100 },
    )
    .catch(() => {});
  const m = await measure(target);
  const { card } = m;
  assert.ok(card.top >= 0 && card.left >= 0 && card.right <= m.width, `${where}: the first card starts outside the viewport: ${JSON.stringify(card)}`);
  if (card.height <= m.height) {
    assert.ok(card.bottom <= m.height, `${where}: the first card ends below the viewport (${card.bottom} > ${m.height})`);
  } else {
    assert.ok(card.top < m.height / 2, `${where}: the first card (taller than the window) starts low: ${card.top}`);
  }
  return m;
}

/** Types an opening into `target` and presses (or taps) Write, then waits for the round. */
async function writeRound(target, opening, tap) {
  await target.locator(byTestId('prompt')).fill(opening);
  const write = target.locator(byTestId('write'));
  await (tap ? write.tap() : write.click());
  await candidatesReady(target, SLOW);
}

const VIEWPORTS = [
  { name: 'phone', width: 390, height: 844, touch: true },
  { name: 'tablet', width: 768, height: 1024, touch: true },
  { name: 'desktop', width: 1280, height: 800, touch: false },
];

for (const { name, width, height, touch } of VIEWPORTS) {
  test(`${name} (${width} × ${height}): one-line header, nothing out of the page, the first card in view after Write`, { timeout: TEST_TIMEOUT }, async () => {
    const { context, tab, problems } = await freshTab({ viewport: { width, height }, hasTouch: touch, isMobile: touch });
    try {
      await tab.goto(BASE);
      await modelReady(tab, SLOW);
      assertLayout(await measure(tab), `${name}, ready`);
      // The page's demo notice, collapsed; the embedded view's notice and link are not shown.
      const hint = tab.locator(byTestId('demo-hint'));
      assert.equal(await hint.isVisible(), true);
      assert.ok((await hint.boundingBox()).height < 2 * TOUCH, 'the collapsed demo notice is taller than two rows');
      assert.equal(await tab.locator(byTestId('embed-notice')).isVisible(), false);
      assert.equal(await tab.locator(byTestId('full-app')).isVisible(), false);

      await writeRound(tab, 'The lighthouse keeper counted the ships', touch);
      const m = await assertFirstCardInView(tab, name);
      assertLayout(m, `${name}, after Write`);
      await tab.screenshot({ path: join(OUT, `${name}.png`) });
      await tab.screenshot({ path: join(OUT, `${name}-full.png`), fullPage: true });

      // Picking by tap (or click) adds the card's text to the story.
      const second = await cardText(tab, 2);
      const card = tab.locator(byTestId('candidate-2'));
      await (touch ? card.tap() : card.click());
      await storyIs(tab, `The lighthouse keeper counted the ships${second}`, SLOW);
      assert.deepEqual(problems, []);
    } finally {
      await context.close();
    }
  });
}

test('phone: 320 px wide with the panels open, the status whole on a tap, the demo notice dismissed for good', { timeout: TEST_TIMEOUT }, async () => {
  const { context, tab, problems } = await freshTab({ viewport: { width: 320, height: 640 }, hasTouch: true, isMobile: true });
  try {
    await tab.goto(BASE);
    await modelReady(tab, SLOW);
    assertLayout(await measure(tab), '320 px');
    // The status is cut to one line; its whole text is its tooltip, and a tap shows it all.
    const line = tab.locator(byTestId('model-status-line'));
    const status = await tab.locator(byTestId('model-status')).textContent();
    assert.equal(await line.getAttribute('title'), status);
    const oneLine = (await line.boundingBox()).height;
    await line.tap();
    assert.equal(await line.getAttribute('aria-expanded'), 'true');
    assert.ok((await line.boundingBox()).height > oneLine, 'a tap did not show the whole status');
    await line.tap();
    assert.equal((await line.boundingBox()).height, oneLine);

    // The panels open: the models' sources, the demo notice's details, the settings.
    await tab.locator(`${byTestId('model-sources')} > summary`).tap();
    await tab.locator(`${byTestId('demo-hint')} summary`).tap();
    await tab.locator(byTestId('settings-toggle')).tap();
    assert.equal(await tab.locator(byTestId('settings')).isVisible(), true);
    const open = await measure(tab);
    assert.deepEqual(open.overflowing, [], '320 px, panels open: elements stick out of the page sideways');
    assert.ok(open.scrollWidth <= open.width, `320 px, panels open: the page scrolls sideways (${open.scrollWidth})`);
    await tab.screenshot({ path: join(OUT, 'phone-320-panels.png'), fullPage: true });

    // Dismissed once, the notice stays away on the next visit.
    await tab.locator(byTestId('demo-hint-dismiss')).tap();
    assert.equal(await tab.locator(byTestId('demo-hint')).isVisible(), false);
    await tab.reload();
    await modelReady(tab, SLOW);
    assert.match(await tab.locator(byTestId('model-status')).textContent(), /demo model/);
    assert.equal(await tab.locator(byTestId('demo-hint')).isVisible(), false);
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});

test('?embed=1 in a 700 × 600 iframe on another site: a one-line notice for visitors, a link to the full app, the first card in view after Write', { timeout: TEST_TIMEOUT }, async () => {
  const embedder = writeEmbedder(BASE, MODELS, 'embedder-700.html', {
    bodyStyle: 'margin: 0',
    iframe: 'width="700" height="600" style="border: 0; display: block"',
    after: '<p>The embedding page goes on.</p>',
  });
  const { context, tab, problems } = await freshTab({ viewport: { width: 700, height: 600 } });
  try {
    await tab.goto(embedder);
    const iframe = await tab.waitForSelector('iframe');
    const frame = await iframe.contentFrame();
    await modelReady(frame, SLOW);
    const before = await measure(frame);
    assert.equal(before.height, 600);
    assertLayout(before, 'embed, ready');

    // For visitors: one line on the demo model and where the real one loads, a link to the full
    // app, no command-line advice.
    const notice = frame.locator(byTestId('embed-notice'));
    assert.equal(await notice.isVisible(), true);
    assert.match(await notice.textContent(), /^Demo model with random weights — the real model loads from /);
    const noticeLines = await notice.evaluate((e) => {
      const style = getComputedStyle(e);
      const padding = parseFloat(style.paddingTop) + parseFloat(style.paddingBottom);
      return (e.getBoundingClientRect().height - padding) / (1.3 * parseFloat(style.fontSize));
    });
    assert.ok(noticeLines < 1.5, `the embedded notice is ${noticeLines.toFixed(1)} lines high`);
    assert.equal(await frame.locator(byTestId('demo-hint')).isVisible(), false);
    const shown = await frame.evaluate(() => document.body.innerText);
    assert.doesNotMatch(shown, /storywriter (quantize|serve)|--input|command line/i);
    const link = frame.locator(byTestId('full-app'));
    assert.equal(await link.isVisible(), true);
    assert.equal(await link.evaluate((a) => a.href), new URL('./', BASE).href);
    assert.equal(await link.getAttribute('target'), '_blank');
    // The writing controls fit the 600-pixel frame before anything is written.
    const write = await frame.locator(byTestId('write')).evaluate((e) => e.getBoundingClientRect().bottom);
    assert.ok(write <= 600, `the Write button is below the frame's fold (${write})`);

    await writeRound(frame, 'A visitor tries the demo', false);
    const m = await assertFirstCardInView(frame, 'embed');
    assertLayout(m, 'embed, after Write');
    // The frame scrolled itself only: the embedding page stays where it was.
    assert.equal(await tab.evaluate(() => window.scrollY), 0);
    await iframe.screenshot({ path: join(OUT, 'embed.png') });

    // The link opens the full app in a new tab (the sandbox allows pop-ups for it).
    const [popup] = await Promise.all([context.waitForEvent('page'), link.click()]);
    await popup.waitForLoadState('domcontentloaded');
    assert.equal(popup.url(), new URL('./', BASE).href);
    await popup.close();
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});

test('the reader\'s settings: a dark theme, reduced motion, text that grows with the browser\'s font size', { timeout: TEST_TIMEOUT }, async () => {
  const { context, tab, problems } = await freshTab({
    viewport: { width: 390, height: 844 },
    hasTouch: true,
    isMobile: true,
    colorScheme: 'light',
    reducedMotion: 'no-preference',
  });
  /** Relative luminance of a CSS rgb() colour. */
  const luminance = (rgb) => {
    const [r, g, b] = rgb.match(/[\d.]+/g).slice(0, 3).map((v) => {
      const c = Number(v) / 255;
      return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const contrast = (a, b) => (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  const look = () =>
    tab.evaluate(() => {
      const style = (selector) => getComputedStyle(document.querySelector(selector));
      return {
        paper: style('html').backgroundColor,
        ink: style('html').color,
        card: style('[data-testid="candidate-1"]').backgroundColor,
        cardInk: style('[data-testid="candidate-1"] .text').color,
        prompt: style('[data-testid="prompt"]').backgroundColor,
        promptInk: style('[data-testid="prompt"]').color,
        transition: style('[data-testid="candidate-1"]').transitionDuration,
        rootFont: parseFloat(style('html').fontSize),
        storyFont: parseFloat(style('[data-testid="story"]').fontSize),
        write: document.querySelector('[data-testid="write"]').getBoundingClientRect().height,
      };
    });
  /** Scrolls to the end of the page (the cards above the window) and presses Regenerate: tells
   * whether the first card was back in the window when the click returned (the scroll is never
   * animated), then waits for the round and the cards in view. */
  const jumpsToCards = async () => {
    const moved = await tab.evaluate(() => {
      window.scrollTo({ top: document.documentElement.scrollHeight, behavior: 'instant' });
      const card = document.querySelector('[data-testid="candidate-1"]');
      if (card.getBoundingClientRect().bottom > 0) throw new Error('the cards are still in the window at the end of the page');
      document.querySelector('[data-testid="regenerate"]').click();
      const { top } = card.getBoundingClientRect();
      return top >= 0 && top < window.innerHeight;
    });
    await candidatesReady(tab, SLOW);
    await assertFirstCardInView(tab, 'regenerate from the end of the page');
    return moved;
  };
  try {
    await tab.goto(BASE);
    await modelReady(tab, SLOW);
    await writeRound(tab, 'Night fell on the harbour', true);
    const light = await look();
    assert.ok(luminance(light.paper) > 0.8, `light paper ${light.paper}`);
    assert.notEqual(light.transition, '0s');
    assert.equal(await jumpsToCards(), true, 'Regenerate at the end of the page did not go back to the cards');

    await tab.emulateMedia({ colorScheme: 'dark', reducedMotion: 'reduce' });
    const dark = await look();
    assert.ok(luminance(dark.paper) < 0.05, `dark paper ${dark.paper}`);
    assert.ok(contrast(luminance(dark.paper), luminance(dark.ink)) >= 7, `dark text ${dark.ink} on ${dark.paper}`);
    assert.ok(luminance(dark.card) < 0.05, `dark card ${dark.card}`);
    assert.ok(contrast(luminance(dark.card), luminance(dark.cardInk)) >= 7, `card text ${dark.cardInk} on ${dark.card}`);
    assert.ok(contrast(luminance(dark.prompt), luminance(dark.promptInk)) >= 7, `prompt ${dark.promptInk} on ${dark.prompt}`);
    // Reduced motion: no transitions; the page still goes to the cards at once.
    assert.equal(dark.transition, '0s');
    assert.equal(await jumpsToCards(), true, 'Regenerate at the end of the page did not go back to the cards');
    await tab.screenshot({ path: join(OUT, 'phone-dark.png') });

    // The browser's font size 24 px instead of 16: every size follows, and the layout holds.
    const cdp = await context.newCDPSession(tab);
    await cdp.send('Page.setFontSizes', { fontSizes: { standard: 24, fixed: 20 } });
    const large = await look();
    assert.equal(large.rootFont, 24);
    assert.ok(Math.abs(large.storyFont / light.storyFont - 1.5) < 0.01, `story font ${light.storyFont} → ${large.storyFont}`);
    assert.ok(large.write >= 1.5 * TOUCH - 1, `the Write button did not grow (${large.write} px)`);
    assertLayout(await measure(tab), 'font size 24 px');
    await tab.screenshot({ path: join(OUT, 'phone-large-font.png') });
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});
