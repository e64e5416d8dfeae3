// Types of the <story-writer> element (story-writer.js).
import type { Story, StoryWriter } from './index.js';

/** The <story-writer> element. */
export class StoryWriterElement extends HTMLElement {
  /** The StoryWriter it uses (null until it is connected). */
  writer: StoryWriter | null;
  /** The story being written, or null. */
  story: Story | null;
  /** How many candidates a step writes (the `candidates` attribute, 1 to 3). */
  readonly candidates: number;
}

declare global {
  interface HTMLElementTagNameMap {
    'story-writer': StoryWriterElement;
  }
}
