// A status line on stderr: on a terminal it is redrawn in place (carriage return + clear line); elsewhere (logs,
// pipes) every update is its own line, so nothing is lost and no control codes appear.
import { stderrIsTty, writeErr } from "./host.ts";

export class ProgressLine {
  private open = false;
  constructor(readonly tty = stderrIsTty()) {}

  /** Shows `text` (a TTY redraws the line; otherwise prints it on a line of its own). */
  update(text: string): void {
    if (this.tty) {
      writeErr(`\r\x1b[K${text}`);
      this.open = true;
    } else writeErr(`${text}\n`);
  }

  /** Ends a redrawn line so later output starts on a fresh one. */
  end(): void {
    if (this.open) writeErr("\n");
    this.open = false;
  }
}
