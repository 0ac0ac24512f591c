// Drives headless Chromium through the kvlog console for
// console/browser_test.go. The Go test owns the broker and the Kafka
// clients; this script owns the browser. They talk over stdio: the script
// prints "STEP <name>" when it needs the Go side to act and waits for a
// line ("go") on standard input; "LOG <text>" lines are progress; a
// failure prints "FAIL <reason>" and exits 1.
//
// Usage: node console.mjs '<json: {base, artifacts, topic, group, chromium}>'
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";
import { join } from "node:path";

const cfg = JSON.parse(process.argv[2]);
const rl = createInterface({ input: process.stdin });
const lines = rl[Symbol.asyncIterator]();

function log(s) { process.stdout.write("LOG " + s + "\n"); }
async function step(name) {
  process.stdout.write("STEP " + name + "\n");
  const { value, done } = await lines.next();
  if (done || value.trim() !== "go") throw new Error("step " + name + ": the test answered " + JSON.stringify(value));
}
function check(cond, msg) { if (!cond) throw new Error(msg); }

let shot = 0;
async function screenshot(page, name) {
  shot++;
  const file = join(cfg.artifacts, String(shot).padStart(2, "0") + "-" + name + ".png");
  await page.screenshot({ path: file, fullPage: true });
  log("screenshot " + file);
}

// Accessibility basics of every page: one banner, one main, a labelled
// navigation, one h1, the current page marked in the navigation, every
// form control named, tables with column headers, charts with a text
// alternative.
async function a11y(page, what) {
  const r = await page.evaluate(() => {
    const out = [];
    const count = (sel) => document.querySelectorAll(sel).length;
    if (count("main") !== 1) out.push("main landmarks: " + count("main"));
    if (count("header") !== 1) out.push("banner landmarks: " + count("header"));
    if (count("nav[aria-label]") < 1) out.push("no labelled navigation");
    if (count("h1") !== 1) out.push("h1 count: " + count("h1"));
    if (count('nav a[aria-current="page"]') !== 1) out.push("current page not marked in the navigation");
    if (!document.documentElement.lang) out.push("no lang on html");
    for (const el of document.querySelectorAll("input:not([type=hidden]), select, textarea, button")) {
      const named = (el.labels && el.labels.length > 0) || el.getAttribute("aria-label") || el.getAttribute("aria-labelledby") ||
        (el.tagName === "BUTTON" && el.textContent.trim());
      if (!named) out.push("unnamed control " + el.outerHTML.slice(0, 80));
    }
    for (const t of document.querySelectorAll("table")) {
      if (!t.querySelector("th")) out.push("table without headers");
    }
    for (const s of document.querySelectorAll("svg")) {
      if (s.getAttribute("role") !== "img" || !s.getAttribute("aria-label")) out.push("svg without role=img and a label");
    }
    return out;
  });
  check(r.length === 0, what + ": accessibility: " + r.join("; "));
}

// waitCell polls (the page refreshes itself) until fn(text of selector)
// holds.
async function waitText(page, selector, fn, what, timeout = 20000) {
  const deadline = Date.now() + timeout;
  let last = "(absent)";
  while (Date.now() < deadline) {
    const el = await page.$(selector);
    if (el) {
      last = (await el.textContent()).trim();
      if (fn(last)) return last;
    }
    await page.waitForTimeout(150);
  }
  throw new Error(what + ": still " + JSON.stringify(last) + " after " + timeout + "ms");
}

// waitSpark polls (the page refreshes itself) until the sparkline at
// selector is drawn (an SVG with a path) and fn({latest, peak}) holds:
// latest is the value its text alternative names, peak whether any point
// is above the baseline (a value > 0 among the samples).
async function waitSpark(page, selector, fn, what, timeout = 20000) {
  const deadline = Date.now() + timeout;
  let last = "(absent)";
  while (Date.now() < deadline) {
    const s = await page.evaluate((sel) => {
      const svg = document.querySelector(sel);
      if (!svg) return null;
      const path = svg.querySelector("path");
      const label = svg.getAttribute("aria-label") || "";
      const m = /latest ([0-9.]+)/.exec(label);
      const base = svg.viewBox.baseVal.height - 1;
      const ys = path ? (path.getAttribute("d").match(/-?[0-9.]+/g) || []).filter((_, i) => i % 2 === 1).map(Number) : [];
      return { label, drawn: !!path, latest: m ? parseFloat(m[1]) : NaN, peak: ys.some((y) => y < base) };
    }, selector);
    if (s) {
      last = JSON.stringify(s);
      if (s.drawn && fn(s)) return s;
    }
    await page.waitForTimeout(150);
  }
  throw new Error(what + ": sparkline still " + last + " after " + timeout + "ms");
}

async function main() {
  const browser = await chromium.launch({
    executablePath: cfg.chromium,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
  try {
    const ctx = await browser.newContext({ viewport: { width: 1360, height: 800 } });
    const page = await ctx.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    // Every script error counts, and every failed response except the
    // 400 that answers the deliberately invalid config form.
    page.on("console", (m) => { if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) errors.push(m.text()); });
    page.on("response", (r) => {
      if (r.status() >= 400 && !(r.status() === 400 && r.url().endsWith("/configs"))) errors.push(r.status() + " " + r.url());
    });
    const base = cfg.base;
    const tp = cfg.topic + "-0";

    // Cluster.
    await page.goto(base + "/ui/");
    await page.getByRole("heading", { name: "Brokers" }).waitFor();
    await page.getByRole("heading", { name: "This broker" }).waitFor();
    check((await page.locator("#brokers td").first().textContent()).trim() === "0", "broker 0 not listed");
    await a11y(page, "cluster");
    await screenshot(page, "cluster");

    // Keyboard: the first Tab reaches the skip link, Enter moves focus
    // to main; the navigation is reachable and works with Enter.
    await page.keyboard.press("Tab");
    check(await page.evaluate(() => document.activeElement.classList.contains("skip")), "first Tab does not reach the skip link");
    await page.keyboard.press("Enter");
    check(await page.evaluate(() => document.activeElement.id === "main"), "the skip link does not move focus to main");
    await page.keyboard.press("Shift+Tab"); // back into the header
    let reached = false;
    for (let i = 0; i < 12 && !reached; i++) {
      reached = await page.evaluate(() => document.activeElement.textContent.trim() === "Topics");
      if (!reached) await page.keyboard.press("Shift+Tab");
    }
    check(reached, "the Topics link is not reachable with the keyboard");
    await Promise.all([page.waitForURL(/\/ui\/topics$/), page.keyboard.press("Enter")]);

    // Topics list and the topic page.
    await page.getByRole("link", { name: cfg.topic, exact: true }).waitFor();
    await a11y(page, "topics");
    await screenshot(page, "topics");
    await page.getByRole("link", { name: cfg.topic, exact: true }).click();
    await page.getByRole("heading", { name: "Partitions" }).waitFor();
    const hw = parseInt(await page.locator('tr[data-partition="0"] td.hw').textContent(), 10);
    check(hw > 0, "high watermark of " + tp + " is " + hw);
    const cells = await page.locator('tr[data-partition="0"] td').allTextContents();
    check(cells[7].trim() !== "0 B", "size of " + tp + " is " + cells[7]);
    check(parseInt(cells[8], 10) > 1, "segments of " + tp + ": " + cells[8]);
    await a11y(page, "topic");
    await screenshot(page, "topic");

    // Compaction: the first pass is done; the dirty ratio rises once the
    // test writes updates.
    await page.goto(base + "/ui/compaction");
    const row = 'tr[data-tp="' + tp + '"]';
    await waitText(page, row + " td.passes", (t) => parseInt(t, 10) >= 1, "first clean pass of " + tp);
    const before = parseFloat(await page.locator(row + " td.dirty-ratio").textContent());
    log("dirty ratio before the updates " + before);
    await step("write-updates");
    const risen = await waitText(page, row + " td.dirty-ratio", (t) => parseFloat(t) > Math.max(before, 0.3), "dirty ratio rising");
    log("dirty ratio after the updates " + risen);
    await a11y(page, "compaction");
    await screenshot(page, "compaction-dirty");

    // Configs: an invalid value is refused inline; a valid one applies.
    await page.goto(base + "/ui/topics/" + encodeURIComponent(cfg.topic));
    const field = page.getByLabel("min.cleanable.dirty.ratio", { exact: true });
    await field.fill("1.5");
    await Promise.all([page.waitForLoadState("load"), page.getByRole("button", { name: "Apply changes" }).click()]);
    await page.locator("#form-error").waitFor();
    const invalid = page.getByLabel("min.cleanable.dirty.ratio", { exact: true });
    check(await invalid.getAttribute("aria-invalid") === "true", "invalid value not marked aria-invalid");
    const msg = await page.locator("#err-min\\.cleanable\\.dirty\\.ratio").textContent();
    check(/INVALID_CONFIG|min\.cleanable\.dirty\.ratio/.test(msg), "inline error does not explain: " + msg);
    await a11y(page, "topic with an error");
    await screenshot(page, "config-invalid");
    await invalid.fill("0.1");
    await Promise.all([page.waitForURL(/saved=/), page.getByRole("button", { name: "Apply changes" }).click()]);
    await page.getByRole("status").filter({ hasText: "min.cleanable.dirty.ratio" }).waitFor();
    await step("config-changed");

    // The cleaner now cleans: the ratio falls, the last clean moves.
    await page.goto(base + "/ui/compaction");
    const fallen = await waitText(page, row + " td.dirty-ratio", (t) => parseFloat(t) < 0.1, "dirty ratio falling after the cleaner pass");
    await waitText(page, row + " td.passes", (t) => parseInt(t, 10) >= 2, "second clean pass of " + tp);
    log("dirty ratio after the pass " + fallen);
    // The chart's latest sample shows the clean log (the page refreshes).
    const deadline = Date.now() + 20000;
    let label = "";
    while (Date.now() < deadline) {
      label = await page.locator(row + " svg").getAttribute("aria-label");
      if (/latest 0\.0/.test(label)) break;
      await page.waitForTimeout(150);
    }
    check(/latest 0\.0/.test(label), "chart's latest sample is not the clean ratio: " + label);
    await screenshot(page, "compaction-clean");

    // Records: tombstones are marked.
    await page.goto(base + "/ui/topics/" + encodeURIComponent(cfg.topic) + "/records?partition=0&offset=0");
    await page.locator("tr.tombstone").first().waitFor();
    const tombs = await page.locator("tr.tombstone").count();
    check(tombs >= 1, "no tombstone marked");
    await a11y(page, "records");
    // The partition and offset form works from the keyboard.
    await page.getByLabel("From offset").fill(String(hw));
    await Promise.all([page.waitForURL(/offset=/), page.getByLabel("From offset").press("Enter")]);
    await screenshot(page, "records");

    // Consumer groups: lag, then the group consumes and the lag drops.
    await step("group-lagging");
    await page.goto(base + "/ui/groups");
    const grow = 'tr[data-group="' + cfg.group + '"] td.lag';
    const lag = await waitText(page, grow, (t) => parseInt(t, 10) > 0, "group lag");
    log("group lag " + lag);
    await a11y(page, "groups");
    await screenshot(page, "groups-lagging");
    // The group page charts the total lag as the console samples it:
    // above 0 now, then 0 once a member has consumed and committed.
    await page.getByRole("link", { name: cfg.group, exact: true }).click();
    await page.getByRole("heading", { name: "Members" }).waitFor();
    const spark = "p.lag-history svg";
    await waitSpark(page, spark, (s) => s.latest > 0, "group lag chart above 0");
    await step("group-consume");
    await waitText(page, "#group-state .lag", (t) => t === "0", "group lag dropping to 0");
    const lagged = await waitSpark(page, spark, (s) => s.latest === 0 && s.peak, "group lag chart dropping to 0");
    log("group lag chart: " + lagged.label);
    await a11y(page, "group");
    await screenshot(page, "group");

    // Topics: records/s in and bytes/s out, sampled from the high
    // watermarks and the consumers' fetches, drawn as sparklines.
    await step("write-more");
    await page.goto(base + "/ui/topics");
    const trow = 'tr[data-topic="' + cfg.topic + '"]';
    const rin = await waitSpark(page, trow + " td.rate-in svg", (s) => s.peak, "records/s in of " + cfg.topic);
    const rout = await waitSpark(page, trow + " td.rate-out svg", (s) => s.peak, "bytes/s out of " + cfg.topic);
    log("rates: " + rin.label + "; " + rout.label);
    await a11y(page, "topics with rates");
    await screenshot(page, "topics-rates");

    check(errors.length === 0, "browser errors: " + errors.join("; "));
  } finally {
    await browser.close();
  }
}

main().then(
  () => { process.stdout.write("DONE\n"); process.exit(0); },
  (e) => { process.stdout.write("FAIL " + String(e && e.stack || e).replace(/\n/g, " | ") + "\n"); process.exit(1); },
);
