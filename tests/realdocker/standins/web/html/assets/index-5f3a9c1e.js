// aixsss web stand-in: a hashed Vite-style asset (served with immutable caching, never replaced by index.html)
document.getElementById('root').dataset.standin = 'loaded';
