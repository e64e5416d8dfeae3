// <story-writer>: a story writer for any page, one script tag and one element:
//   <script type="module" src="pkg/story-writer.js"></script>
//   <story-writer model="models/index.json" candidates="3"></story-writer>
// Attributes: `model` (a GGUF file's URL, or a models/index.json whose first model is loaded),
// `candidates` (1 to 3 per step, default 3), `table` (a step table's URL; default the bundled
// one), `readonly-export` (Export shows the dataset's files read-only in the element instead of
// offering them as downloads). Keys 1/2/3 pick a card while the element has the focus. Records
// are kept in IndexedDB (database "story-writer"), so a reload continues the last story.
// Styles live in the shadow root as a constructed style sheet (no inline style, so a strict
// Content-Security-Policy works); font and colours come from the page, and the custom
// properties --story-writer-accent, --story-writer-card and --story-writer-border set the rest.
import { StoryWriter } from './index.js';

const POLICIES = ['step-mean', 'step-sample', 'coupled-random'];
const DB_NAME = 'story-writer';
const STORE = 'records';

const sheet = new CSSStyleSheet();
sheet.replaceSync(`
  :host { display: block; font: inherit; color: inherit; --accent: var(--story-writer-accent, #2563eb);
    --card: var(--story-writer-card, transparent); --border: var(--story-writer-border, currentColor); }
  [hidden] { display: none !important; }
  .status { margin: 0 0 .5em; opacity: .8; }
  .story { white-space: pre-wrap; margin: 0 0 .5em; }
  textarea { font: inherit; color: inherit; background: transparent; width: 100%; box-sizing: border-box; }
  .buttons { display: flex; gap: .5em; flex-wrap: wrap; margin: .5em 0; }
  button { font: inherit; min-height: 2.75em; padding: 0 1em; border-radius: .4em; cursor: pointer;
    border: 1px solid var(--accent); background: var(--accent); color: white; }
  button.secondary { background: transparent; color: inherit; }
  button:disabled { opacity: .5; cursor: default; }
  .cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(12em, 1fr)); gap: .5em; }
  .card { text-align: left; white-space: pre-wrap; background: var(--card); color: inherit;
    border: 1px solid var(--border); padding: .5em; }
  .card .meta { display: block; font-size: .8em; opacity: .7; margin-bottom: .3em; }
  .files a { margin-right: 1em; color: var(--accent); }
  .files textarea { height: 8em; }
`);

/** The custom element; its `writer` is the StoryWriter it uses and `story` the current story. */
export class StoryWriterElement extends HTMLElement {
  static observedAttributes = ['model', 'table'];
  writer = null;
  story = null;
  #ui = null;
  #table = null;
  #waiting = [];
  #controller = null;
  #db = null;
  #started = null;

  constructor() {
    super();
    const root = this.attachShadow({ mode: 'open' });
    root.adoptedStyleSheets = [sheet];
    const make = (tag, props = {}) => Object.assign(document.createElement(tag), props);
    const ui = {
      status: make('p', { className: 'status', role: 'status', textContent: 'Starting…' }),
      story: make('p', { className: 'story' }),
      opening: make('textarea', { rows: 3, value: 'Once upon a time' }),
      write: make('button', { textContent: 'Write', disabled: true }),
      stop: make('button', { textContent: 'Stop', className: 'secondary', disabled: true }),
      exportButton: make('button', { textContent: 'Export dataset', className: 'secondary', disabled: true }),
      cards: make('div', { className: 'cards' }),
      files: make('div', { className: 'files', hidden: true }),
    };
    ui.opening.setAttribute('aria-label', 'Opening of the story');
    for (const [name, node] of Object.entries(ui)) node.dataset.testid = name;
    ui.write.onclick = () => this.#write();
    ui.stop.onclick = () => this.#controller?.abort();
    ui.exportButton.onclick = () => this.#export();
    const buttons = make('div', { className: 'buttons' });
    buttons.append(ui.write, ui.stop, ui.exportButton);
    root.append(ui.status, ui.story, ui.opening, buttons, ui.cards, ui.files);
    this.#ui = ui;
    this.addEventListener('keydown', (event) => {
      const index = Number(event.key) - 1;
      if (event.composedPath()[0]?.tagName === 'TEXTAREA' || !this.#waiting[index]) return;
      event.preventDefault();
      this.#pick(index);
    });
  }

  connectedCallback() {
    if (!this.hasAttribute('tabindex')) this.tabIndex = 0;
    this.#started ??= this.#start();
  }

  /** A new model starts over; a new table is used from the next round, the model kept. */
  attributeChangedCallback(name, previous, value) {
    if (!this.#started || previous === value) return;
    if (name === 'model') this.#started = this.#start();
    else this.#started.then(() => this.#useTable());
  }

  /** How many candidates a step writes (the `candidates` attribute, 1 to 3). */
  get candidates() {
    const wanted = Number(this.getAttribute('candidates') ?? 3);
    return Number.isInteger(wanted) ? Math.min(Math.max(wanted, 1), POLICIES.length) : POLICIES.length;
  }

  async #start() {
    const { status, write } = this.#ui;
    write.disabled = true;
    try {
      this.writer ??= new StoryWriter();
      this.#db ??= await openDatabase();
      const model = await this.#loadModel();
      await this.#useTable();
      await this.#restore();
      status.textContent = `Ready: ${model.name}`;
      write.disabled = false;
    } catch (error) {
      this.#failed(error);
    }
  }

  async #loadModel() {
    const source = new URL(this.getAttribute('model') ?? 'models/index.json', document.baseURI);
    let url = source;
    if (source.pathname.endsWith('.json')) {
      const index = await (await fetch(source)).json();
      url = new URL(index.models[0].file, source);
    }
    return this.writer.loadModel(url, {
      onProgress: ({ phase, bytes, total }) => {
        const share = total ? ` ${Math.round((100 * bytes) / total)}%` : '';
        this.#ui.status.textContent = `Loading the model: ${phase}${share}`;
      },
    });
  }

  /** Loads the `table` attribute's step table (the bundled one without it) for the next rounds;
   * a table that cannot be used is reported at once, and again by Write. */
  #useTable() {
    const url = this.getAttribute('table');
    this.#table = (url ? this.writer.loadTable(url) : this.writer.bundledTable()).then(({ table }) => table);
    this.#table.catch((error) => this.#failed(error));
    return this.#table;
  }

  /** Continues the last story kept in IndexedDB, if any. */
  async #restore() {
    const records = await allRecords(this.#db);
    if (records.length === 0) return;
    const last = records.reduce((a, b) => (a.created_at >= b.created_at ? a : b));
    const own = records.filter((record) => record.story_id === last.story_id);
    this.story = await this.writer.storyFromRecords(last.story_id, own);
    this.#showStory();
    this.#ui.exportButton.disabled = false;
  }

  async #write() {
    const { write, stop, status, opening } = this.#ui;
    write.disabled = true;
    try {
      this.story ??= await this.writer.newStory(opening.value);
      this.#showStory();
      const planned = await this.writer.planRound({
        table: await this.#table,
        table_name: this.getAttribute('table') ?? 'bundled',
        policies: POLICIES.slice(0, this.candidates),
        step: this.story.path.length + 1,
      });
      const cards = planned.map((plan, i) => this.#card(plan, i));
      this.#ui.cards.replaceChildren(...cards);
      this.#controller = new AbortController();
      stop.disabled = false;
      status.textContent = 'Writing…';
      const generation = this.writer.generate(
        { story: this.story, candidates: planned.map(({ params, seed }) => ({ params, seed })) },
        { signal: this.#controller.signal },
      );
      for await (const { candidate, text } of generation) {
        cards[candidate].querySelector('.text').append(text);
      }
      const { story, records } = await this.writer.recordRound(this.story, planned, await generation.result);
      await putRecords(this.#db, records);
      this.story = story;
      this.#waiting = records;
      cards.forEach((card, i) => {
        // The recorded text: a character cut at the end by the last token shows as U+FFFD.
        card.querySelector('.text').textContent = records[i].output_text;
        card.disabled = false;
      });
      status.textContent = `Pick one: click it or press ${records.map((_, i) => i + 1).join(', ')}`;
      this.#ui.exportButton.disabled = false;
    } catch (error) {
      // A stopped round is not recorded: its unfinished cards go.
      if (error.code === 'aborted') this.#ui.cards.replaceChildren();
      this.#failed(error);
      write.disabled = false;
    } finally {
      stop.disabled = true;
    }
  }

  #card(plan, index) {
    const card = document.createElement('button');
    card.className = 'card';
    card.disabled = true;
    card.dataset.testid = `card-${index + 1}`;
    const meta = document.createElement('span');
    meta.className = 'meta';
    meta.textContent = `${index + 1} · ${plan.policy} · temperature ${plan.params.temperature.toFixed(2)}`;
    const text = document.createElement('span');
    text.className = 'text';
    card.append(meta, text);
    card.onclick = () => this.#pick(index);
    return card;
  }

  async #pick(index) {
    const chosen = this.#waiting[index];
    this.#waiting = [];
    try {
      const { story, records } = await this.writer.choose(this.story, chosen.record_id);
      await putRecords(this.#db, records);
      this.story = story;
      this.#showStory();
      this.#ui.cards.replaceChildren();
      this.#ui.status.textContent = `Step ${story.path.length} picked`;
      this.#ui.write.disabled = false;
    } catch (error) {
      this.#failed(error);
    }
  }

  #showStory() {
    this.#ui.story.textContent = this.story.text;
    this.#ui.opening.hidden = true;
  }

  /** The dataset of every record kept: download links, or (readonly-export) the files read-only. */
  async #export() {
    const { files } = await this.writer.exportDataset(await allRecords(this.#db));
    const readonly = this.hasAttribute('readonly-export');
    const items = Object.entries(files).map(([name, text]) => {
      if (readonly) {
        const label = document.createElement('label');
        const view = Object.assign(document.createElement('textarea'), { readOnly: true, value: text });
        view.dataset.file = name;
        label.append(name, view);
        return label;
      }
      const link = document.createElement('a');
      link.href = URL.createObjectURL(new Blob([text], { type: 'text/plain' }));
      link.download = name;
      link.textContent = name;
      return link;
    });
    for (const old of this.#ui.files.querySelectorAll('a')) URL.revokeObjectURL(old.href);
    this.#ui.files.replaceChildren(...items);
    this.#ui.files.hidden = false;
  }

  #failed(error) {
    this.#ui.status.textContent = error.code === 'aborted' ? 'Stopped: nothing was recorded for that round.' : `Error (${error.code ?? 'internal'}): ${error.message}`;
  }
}

function request(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

function openDatabase() {
  const open = indexedDB.open(DB_NAME, 1);
  open.onupgradeneeded = () => open.result.createObjectStore(STORE, { keyPath: 'record_id' });
  return request(open);
}

function allRecords(db) {
  return request(db.transaction(STORE).objectStore(STORE).getAll());
}

function putRecords(db, records) {
  const transaction = db.transaction(STORE, 'readwrite');
  for (const record of records) transaction.objectStore(STORE).put(record);
  return new Promise((resolve, reject) => {
    transaction.oncomplete = resolve;
    transaction.onerror = () => reject(transaction.error);
  });
}

if (!customElements.get('story-writer')) customElements.define('story-writer', StoryWriterElement);
