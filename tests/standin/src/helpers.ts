// `ca mark-tested`, `ca mark-reviewed`, `ca status`, `ca session` for cto-harness's stand-in
// provider. Test material written for cto-harness: it follows the observed contract of the real
// helpers (the active task is named by `.case/active` in the working directory, its JSON lives in
// `.case/tasks/active/<id>.task.json`, markers go to `.case/<id>/`), not their code.
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { spawnSync } from "node:child_process";

const NO_ACTIVE = "ERROR: No active task — .case/active is missing or empty. Run the orchestrator first.";

function activeSlug(): string | null {
  if (!existsSync(".case/active")) return null;
  return readFileSync(".case/active", "utf8").trim() || null;
}

function taskJsonPath(slug: string): string {
  return join(".case", "tasks", "active", `${slug}.task.json`);
}

function setTaskField(slug: string, field: string, value: unknown): void {
  const path = taskJsonPath(slug);
  if (!existsSync(path)) {
    process.stderr.write(`WARNING: task JSON not found for ${slug}\n`);
    return;
  }
  const data = JSON.parse(readFileSync(path, "utf8"));
  data[field] = value;
  writeFileSync(path, `${JSON.stringify(data, null, 2)}\n`);
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(Buffer.from(chunk));
  return Buffer.concat(chunks).toString("utf8");
}

export async function markTested(args: string[]): Promise<number> {
  const slug = activeSlug();
  if (!slug) {
    process.stderr.write(`${NO_ACTIVE}\n`);
    return 1;
  }
  const file = args.find((a) => !a.startsWith("--") && existsSync(a));
  const content = file ? readFileSync(file, "utf8") : await readStdin();
  const hash = createHash("sha256").update(content).digest("hex");
  const pass = (content.match(/pass|passed|✓|ok/gi) ?? []).length;
  const fail = (content.match(/fail|failed|✗|error/gi) ?? []).length;
  mkdirSync(join(".case", slug), { recursive: true });
  writeFileSync(join(".case", slug, "tested"),
    `timestamp: ${new Date().toISOString()}\noutput_hash: ${hash}\npass_indicators: ${pass}\nfail_indicators: ${fail}\n`);
  process.stderr.write(`.case/${slug}/tested created (hash: ${hash.slice(0, 12)}...)\n`);
  setTaskField(slug, "tested", true);
  return 0;
}

function flag(args: string[], name: string): number {
  const index = args.indexOf(`--${name}`);
  const value = index >= 0 ? Number(args[index + 1]) : 0;
  return Number.isFinite(value) ? value : 0;
}

export function markReviewed(args: string[]): number {
  const slug = activeSlug();
  if (!slug) {
    process.stderr.write(`${NO_ACTIVE}\n`);
    return 1;
  }
  const critical = flag(args, "critical");
  if (critical > 0) {
    process.stderr.write(`ERROR: ${critical} critical finding(s): no reviewed marker\n`);
    return 1;
  }
  mkdirSync(join(".case", slug), { recursive: true });
  writeFileSync(join(".case", slug, "reviewed"),
    `critical: ${critical}\nwarnings: ${flag(args, "warnings")}\ninfo: ${flag(args, "info")}\ntimestamp: ${new Date().toISOString()}\n`);
  process.stderr.write(`.case/${slug}/reviewed created\n`);
  return 0;
}

// `ca status <task.json> <field> [value]` and `ca status <task.json> agent <name> <field> [value]`.
export function status(args: string[]): number {
  const [file, ...rest] = args;
  if (!file || !existsSync(file)) {
    process.stderr.write(`Error: task file not found: ${file}\n`);
    return 1;
  }
  const data = JSON.parse(readFileSync(file, "utf8"));
  let holder: Record<string, unknown> = data;
  let keys = rest;
  if (rest[0] === "agent") {
    data.agents ??= {};
    data.agents[rest[1]] ??= {};
    holder = data.agents[rest[1]];
    keys = rest.slice(2);
  }
  const [field, value] = keys;
  if (!field) {
    process.stderr.write("Error: a field is required\n");
    return 1;
  }
  if (value === undefined) {
    const current = holder[field];
    process.stdout.write(`${current ?? ""}\n`);
    return 0;
  }
  holder[field] = value === "now" ? new Date().toISOString() : value;
  writeFileSync(file, `${JSON.stringify(data, null, 2)}\n`);
  return 0;
}

export function session(args: string[]): number {
  const repo = args[0] && !args[0].startsWith("-") ? args[0] : process.cwd();
  const taskIndex = args.indexOf("--task");
  const taskFile = taskIndex >= 0 ? args[taskIndex + 1] : undefined;
  const git = (...a: string[]) => spawnSync("git", a, { cwd: repo, encoding: "utf8" }).stdout.trim();
  const task = taskFile && existsSync(taskFile) ? JSON.parse(readFileSync(taskFile, "utf8")) : {};
  const context = {
    repo: { path: repo, branch: git("branch", "--show-current") || "detached",
      last_commit: git("log", "--oneline", "-1") },
    task: { id: task.id ?? null, status: task.status ?? null, tested: task.tested ?? false },
  };
  process.stdout.write(`${JSON.stringify(context, null, 2)}\n`);
  return 0;
}
