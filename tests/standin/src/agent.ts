// The stand-in's agent loop (scenario "model"): each pipeline phase asks a model, over real HTTP,
// at the Anthropic Messages endpoint named by `$PI_CODING_AGENT_DIR/models.json`, streaming, with
// the tools `read`, `write`, `edit`, `bash`; runs the tool calls it gets back; and reads the
// phase's result from the `<<<AGENT_RESULT ... AGENT_RESULT>>>` block of the model's text.
// Test material written for cto-harness: the shape of the observed contract, none of Case's code
// or prompts (a role is announced by a heading line, `# Implementer — ...`).
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, isAbsolute, join } from "node:path";

export type AgentResult = {
  status: string;
  summary: string;
  artifacts: Record<string, unknown>;
  error: string | null;
  findings?: { critical?: number };
};

type Block = Record<string, any>;
type ToolEvent = (kind: "start" | "end", fields: Record<string, unknown>) => void;

const ROLE_HEADINGS: Record<string, string> = {
  implementer: "Implementer — stand-in implementation agent",
  verifier: "Verifier — stand-in verification agent",
  reviewer: "Reviewer — stand-in review agent",
  closer: "Closer — stand-in pull request agent",
  retrospective: "Retrospective — stand-in retrospective agent",
};

const TOOL_SCHEMAS: Record<string, Block> = {
  read: { type: "object", properties: { path: { type: "string" } }, required: ["path"] },
  write: { type: "object", properties: { path: { type: "string" }, content: { type: "string" } },
    required: ["path", "content"] },
  edit: { type: "object", properties: { path: { type: "string" }, oldText: { type: "string" },
    newText: { type: "string" } }, required: ["path", "oldText", "newText"] },
  bash: { type: "object", properties: { command: { type: "string" } }, required: ["command"] },
};

function toolsFor(agent: string): Block[] {
  const names = agent === "implementer" || agent === "retrospective"
    ? ["read", "write", "edit", "bash"] : ["read", "bash"];
  return names.map((name) => ({ name, description: `the ${name} tool`, input_schema: TOOL_SCHEMAS[name] }));
}

function failed(error: string): AgentResult {
  return { status: "failed", summary: "", artifacts: {}, error };
}

export function parseAgentResult(text: string): AgentResult {
  const start = text.lastIndexOf("<<<AGENT_RESULT");
  if (start < 0) return failed("AGENT_RESULT start delimiter not found");
  const end = text.indexOf("AGENT_RESULT>>>", start);
  if (end < 0) return failed("AGENT_RESULT end delimiter not found");
  try {
    const parsed = JSON.parse(text.slice(start + "<<<AGENT_RESULT".length, end).trim());
    if (!["completed", "failed", "blocked"].includes(parsed.status)) {
      return failed(`AGENT_RESULT invalid status: ${parsed.status}`);
    }
    return parsed;
  } catch (error) {
    return failed(`AGENT_RESULT JSON parse error: ${error}`);
  }
}

// The SSE body of a Messages stream, assembled into the assistant message's content blocks.
export function assemble(sse: string): { blocks: Block[]; stopReason: string; text: string } {
  const blocks: Block[] = [];
  const partial: Record<number, string> = {};
  let stopReason = "";
  let text = "";
  for (const chunk of sse.split("\n\n")) {
    const data = chunk.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("");
    if (!data) continue;
    const event = JSON.parse(data);
    if (event.type === "content_block_start") {
      blocks[event.index] = { ...event.content_block };
    } else if (event.type === "content_block_delta") {
      const block = blocks[event.index];
      if (event.delta.type === "text_delta") {
        block.text += event.delta.text;
        text += event.delta.text;
      } else if (event.delta.type === "input_json_delta") {
        partial[event.index] = (partial[event.index] ?? "") + event.delta.partial_json;
      }
    } else if (event.type === "content_block_stop" && partial[event.index] !== undefined) {
      blocks[event.index].input = partial[event.index] ? JSON.parse(partial[event.index]) : {};
    } else if (event.type === "message_delta") {
      stopReason = event.delta.stop_reason ?? stopReason;
    } else if (event.type === "error") {
      throw new Error(`stream error: ${JSON.stringify(event.error)}`);
    }
  }
  return { blocks, stopReason, text };
}

function runBash(command: string, cwd: string): Promise<{ text: string; isError: boolean }> {
  return new Promise((done) => {
    const child = spawn("/bin/bash", ["-c", command], { cwd, detached: true, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout?.on("data", (chunk) => (output += chunk));
    child.stderr?.on("data", (chunk) => (output += chunk));
    child.on("close", (code) => {
      let text = output || "(no output)";
      if (code !== 0) text += `\n\nCommand exited with code ${code}`;
      done({ text, isError: code !== 0 });
    });
  });
}

async function runTool(name: string, input: Block, cwd: string): Promise<{ text: string; isError: boolean }> {
  const resolvePath = (p: string) => (isAbsolute(p) ? p : join(cwd, p));
  try {
    if (name === "bash") return await runBash(String(input.command ?? ""), cwd);
    if (name === "read") return { text: readFileSync(resolvePath(String(input.path)), "utf8"), isError: false };
    if (name === "write") {
      const path = resolvePath(String(input.path));
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, String(input.content ?? ""));
      return { text: `Successfully wrote ${String(input.content ?? "").length} bytes to ${input.path}`, isError: false };
    }
    if (name === "edit") {
      const path = resolvePath(String(input.path));
      const before = readFileSync(path, "utf8");
      if (!before.includes(String(input.oldText))) return { text: "oldText not found", isError: true };
      writeFileSync(path, before.replace(String(input.oldText), String(input.newText)));
      return { text: `Successfully edited ${input.path}`, isError: false };
    }
    return { text: `unknown tool ${name}`, isError: true };
  } catch (error) {
    return { text: String(error), isError: true };
  }
}

export type AgentRun = {
  agent: string;
  model: string;
  baseUrl: string | undefined;
  apiKey: string | undefined;
  cwd: string;
  prompt: string;
  onTool: ToolEvent;
};

// One agent session: prompt, then tool calls until the model ends its turn.
export async function runAgent(run: AgentRun): Promise<AgentResult> {
  if (!run.baseUrl) return failed("Agent spawn error: no model endpoint in models.json");
  if (!run.apiKey) return failed("AGENT_RESULT start delimiter not found");
  const heading = ROLE_HEADINGS[run.agent] ?? `${run.agent} — stand-in agent`;
  const system = `# ${heading}\n\nYou are the ${run.agent} of cto-harness's stand-in pipeline.`;
  const messages: Block[] = [{ role: "user", content: run.prompt }];
  let responseText = "";
  let calls = 0;
  for (let turn = 0; turn < 60; turn++) {
    let response: Response;
    try {
      response = await fetch(`${run.baseUrl.replace(/\/$/, "")}/v1/messages`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-api-key": run.apiKey,
          "anthropic-version": "2023-06-01" },
        body: JSON.stringify({ model: run.model, max_tokens: 4096, stream: true,
          system: [{ type: "text", text: system }], tools: toolsFor(run.agent), messages }),
      });
    } catch (error) {
      return failed(`Agent spawn error: ${error}`);
    }
    const body = await response.text();
    if (!response.ok) return failed(`Agent spawn error: HTTP ${response.status}: ${body.slice(0, 400)}`);
    const { blocks, stopReason, text } = assemble(body);
    responseText += text;
    messages.push({ role: "assistant", content: blocks });
    if (stopReason !== "tool_use") break;
    const results: Block[] = [];
    for (const block of blocks.filter((b) => b.type === "tool_use")) {
      calls += 1;
      run.onTool("start", { toolCallId: block.id, tool: block.name, args: JSON.stringify(block.input).slice(0, 500) });
      const started = Date.now();
      const result = await runTool(block.name, block.input ?? {}, run.cwd);
      run.onTool("end", { toolCallId: block.id, tool: block.name, durationMs: Date.now() - started,
        isError: result.isError, result: JSON.stringify({ content: [{ type: "text", text: result.text }] }).slice(0, 500) });
      results.push({ type: "tool_result", tool_use_id: block.id, content: result.text, is_error: result.isError });
    }
    messages.push({ role: "user", content: results });
  }
  return parseAgentResult(responseText);
}

export function readBaseUrl(agentDir: string, provider: string): string | undefined {
  const path = join(agentDir, "models.json");
  if (!existsSync(path)) return undefined;
  return JSON.parse(readFileSync(path, "utf8")).providers?.[provider]?.baseUrl;
}
